//! Which parts of a design this build of webstack can run. Designs may already describe
//! components that later work will build; `up` refuses those with a message naming them.

use webstack_topology::Design;

/// One thing a design needs that is not built yet, with where the design asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotBuilt {
    pub what: &'static str,
    pub wherein: String,
}

impl std::fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what, self.wherein)
    }
}

/// Everything the design needs that this build cannot run yet; empty if it can run.
pub fn not_built_yet(design: &Design) -> Vec<NotBuilt> {
    let mut missing = Vec::new();
    for f in &design.floating_ips {
        missing.push(NotBuilt {
            what: "the floating IP (active-passive load balancers)",
            wherein: format!("floating_ips.{}", f.name),
        });
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Design {
        webstack_topology::parse_design(
            webstack_topology::shipped_source(name).unwrap(),
            name,
            std::path::Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn simple_runs_and_the_others_name_what_they_wait_for() {
        assert!(not_built_yet(&shipped("simple")).is_empty());
        assert!(not_built_yet(&shipped("distributed")).is_empty());
        assert!(not_built_yet(&shipped("secured")).is_empty());
        let scaled: Vec<String> = not_built_yet(&shipped("scaled"))
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            scaled.contains(
                &"the floating IP (active-passive load balancers) (floating_ips.vip)".to_string()
            ),
            "{scaled:?}"
        );
    }
}
