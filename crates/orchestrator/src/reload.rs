//! `webstack reload [DESIGN]`: applies a changed design to the running stack without a
//! refused connection or a failed request, as HAProxy's seamless reload does.
//!
//! What each server's node can change live (load balancer backends, weights, algorithm,
//! health checks and limits; web upstreams; firewall rules) it changes on SIGHUP, each
//! front component handing its sockets to a new instance while the old one finishes
//! (`webstack_node::reload_plan` decides, for both sides). New servers are started, and
//! servers the design no longer has are stopped gracefully once nothing sends them
//! traffic. A change that needs a running server restarted (a new address, port or
//! component, other app, database or DNS settings) is refused with what to run instead,
//! before anything is changed. `--dry-run` prints the plan.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use webstack_net::process::{alive, signal};
use webstack_node::{read_status, ReloadPlan, StackLayout};
use webstack_topology::Design;

use crate::faults::{apply, Fault};
use crate::record::{NodeRecord, StackRecord};

/// How long a node may take to apply a reload, and the load balancers to find a new
/// backend up.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One server's part in a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub server: String,
    pub plan: ReloadPlan,
}

/// What `new` changes against `old`, server by server (the name server included), and the
/// changes a reload refuses because they need a running server restarted.
pub fn steps(old: &Design, new: &Design) -> (Vec<Step>, Vec<String>) {
    let mut names: Vec<String> = old.servers.iter().map(|s| s.name.clone()).collect();
    for s in &new.servers {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    let mut refused = Vec::new();
    if (
        old.dns.address,
        old.dns.port,
        &old.dns.records,
        &old.dns.monitoring,
    ) != (
        new.dns.address,
        new.dns.port,
        &new.dns.records,
        &new.dns.monitoring,
    ) || old.domain != new.domain
    {
        refused.push("the name server's zone or settings change (a restart of `dns`)".to_string());
    }
    if old.codebase != new.codebase {
        refused.push(
            "the codebase changes: deploy a new release with `webstack deploy` instead".to_string(),
        );
    }
    if old.logs != new.logs {
        refused.push("the [logs] settings change (every server restarts to take them)".to_string());
    }
    let steps: Vec<Step> = names
        .into_iter()
        .map(|server| Step {
            plan: webstack_node::reload_plan(old, new, &server),
            server,
        })
        .filter(|s| !s.plan.is_empty())
        .collect();
    for s in &steps {
        if old.server(&s.server).is_some() && new.server(&s.server).is_some() {
            refused.extend(s.plan.restart.iter().cloned());
        }
    }
    (steps, refused)
}

/// Reloads the running stack with `source` (a shipped design's name or a design file;
/// the stack's own design when `None`). `say` is told each step.
pub async fn reload(
    source: Option<&str>,
    state_dir: &Path,
    layout: &StackLayout,
    exe: &Path,
    dry_run: bool,
    say: &dyn Fn(String),
) -> Result<()> {
    let mut record = StackRecord::read(layout)?.context("the stack is not running")?;
    let subnet = record
        .subnet
        .as_deref()
        .map(crate::parse_subnet)
        .transpose()?;
    let source = match source {
        None => record.design.clone(),
        Some(s) if webstack_topology::shipped_source(s).is_some() => s.to_string(),
        Some(path) => std::fs::canonicalize(path)
            .with_context(|| format!("cannot read the design {path}"))?
            .display()
            .to_string(),
    };
    let old = crate::record_design(&record)?;
    let loaded = crate::load_design(&source, subnet)?;
    let new = loaded.design;
    crate::check_certificates(&new)?;
    if new.name != old.name {
        bail!(
            "the design is for stack {:?}, and the running stack is {:?}: a reload changes a stack, it does not rename one; `webstack up` runs the other design beside it",
            new.name,
            old.name
        );
    }
    let (steps, refused) = steps(&old, &new);
    say(format!("reload {} from {source}:", old.name));
    if steps.is_empty() && refused.is_empty() {
        say("  nothing changes".into());
    }
    for s in &steps {
        for l in &s.plan.live {
            say(format!("  {}: {l} (live)", s.server));
        }
        for r in &s.plan.restart {
            say(format!("  {r}"));
        }
    }
    if !refused.is_empty() {
        bail!(
            "the reload is refused, and nothing was changed: {}. A reload changes a running server only where it can without dropping a connection; to apply these, stop the stack and start it with the new design (`webstack down`, then `webstack up {source}`), or make them one server at a time with `webstack stop` and `webstack start`",
            refused.join("; ")
        );
    }
    if dry_run || steps.is_empty() {
        return Ok(());
    }

    // The record names the new design first: nodes load it on SIGHUP, and new ones start
    // with it.
    record.design = source.clone();
    record.source = std::path::Path::new(&source)
        .is_file()
        .then_some(loaded.source);
    let added: Vec<&Step> = steps
        .iter()
        .filter(|s| old.server(&s.server).is_none())
        .collect();
    let removed: Vec<&Step> = steps
        .iter()
        .filter(|s| new.server(&s.server).is_none())
        .collect();
    for s in &added {
        record.nodes.push(NodeRecord {
            server: s.server.clone(),
            pid: 0,
        });
    }
    record.write(layout)?;

    // 1. Live changes on the running servers: new backends join their load balancers
    //    down, in service once their checks pass; firewalls admit the new servers.
    for s in steps.iter().filter(|s| !s.plan.live.is_empty()) {
        let Some(node) = record.nodes.iter().find(|n| n.server == s.server) else {
            continue;
        };
        if !alive(node.pid) {
            say(format!("{}: down; it starts with the new design", s.server));
            continue;
        }
        let before = generation(layout, &s.server);
        signal(node.pid, libc::SIGHUP);
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let outcome = loop {
            match read_status(&layout.node_status(&s.server)).and_then(|n| n.reload) {
                Some(r) if r.generation > before => break Some(r),
                _ if Instant::now() >= deadline => break None,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        match outcome {
            Some(r) => {
                for a in &r.applied {
                    say(format!("{}: applied: {a}", s.server));
                }
                for n in &r.not_applied {
                    say(format!("{}: NOT applied: {n}", s.server));
                }
            }
            None => say(format!(
                "{}: did not report the reload within {APPLY_TIMEOUT:?}; see `webstack logs {}`",
                s.server, s.server
            )),
        }
    }
    // 2. New servers start, and their load balancers put them in service.
    for s in &added {
        say(apply(Fault::Start, &new, layout, state_dir, exe, &s.server).await?);
        wait_in_service(&new, &s.server, say).await;
    }
    // 3. Servers the design no longer has stop, now that nothing sends them traffic.
    for s in &removed {
        if record
            .nodes
            .iter()
            .any(|n| n.server == s.server && alive(n.pid))
        {
            say(apply(Fault::Stop, &old, layout, state_dir, exe, &s.server).await?);
        }
        let mut r = StackRecord::read(layout)?.context("the stack is not running")?;
        r.nodes.retain(|n| n.server != s.server);
        r.write(layout)?;
    }
    say(format!("reloaded {} with {source}", old.name));
    Ok(())
}

/// The node's reload generation (0 before its first reload).
fn generation(layout: &StackLayout, server: &str) -> u64 {
    read_status(&layout.node_status(server))
        .and_then(|n| n.reload)
        .map_or(0, |r| r.generation)
}

/// Waits until every load balancer that has `server` as a backend reports it up.
async fn wait_in_service(design: &Design, server: &str, say: &dyn Fn(String)) {
    let lbs: Vec<(String, std::net::SocketAddr)> = design
        .servers
        .iter()
        .filter_map(|s| {
            let lb = s.load_balancer.as_ref()?;
            lb.backends.iter().any(|b| b.server == server).then(|| {
                (
                    s.name.clone(),
                    std::net::SocketAddr::new(s.address, lb.stats_port),
                )
            })
        })
        .collect();
    let deadline = Instant::now() + APPLY_TIMEOUT;
    for (lb, stats) in lbs {
        loop {
            let up = crate::lb::backends(stats)
                .await
                .ok()
                .and_then(|bs| bs.into_iter().find(|b| b["name"] == server))
                .is_some_and(|b| b["up"] == true);
            if up {
                say(format!("{server}: in service on {lb}"));
                break;
            }
            if Instant::now() >= deadline {
                say(format!("{server}: {lb} does not see it up yet; it goes in service once its checks pass"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(change: impl FnOnce(&str) -> String) -> Design {
        let source = change(webstack_topology::shipped_source("distributed").unwrap());
        webstack_topology::parse_design(&source, "edited", Path::new(".")).unwrap()
    }

    #[test]
    fn adding_and_removing_servers_is_a_reload_and_moving_a_port_is_refused() {
        let old = webstack_topology::load("distributed").unwrap().design;
        let more = edit(|s| {
            format!(
                "{}\n[servers.server3]\naddress = \"127.10.1.13\"\nweb = {{ port = 8080, upstreams = [\"server3\"] }}\napp = {{ port = 8000, database = \"server1\" }}\n",
                s.replace("backends = [\"server1\", \"server2\"]", "backends = [\"server1\", \"server2\", \"server3\"]")
            )
        });
        let (planned, refused) = steps(&old, &more);
        assert!(refused.is_empty(), "{refused:?}");
        let names: Vec<&str> = planned.iter().map(|s| s.server.as_str()).collect();
        assert_eq!(names, ["lb1", "server1", "server3"]);
        // And back: server3 stops, which is a reload too.
        let (planned, refused) = steps(&more, &old);
        assert!(refused.is_empty(), "{refused:?}");
        assert!(planned
            .iter()
            .any(|s| s.server == "server3" && s.plan.restart[0].contains("no longer")));

        let moved = edit(|s| {
            s.replace(
                "port = 3306\nrole = \"primary\"",
                "port = 3307\nrole = \"primary\"",
            )
        });
        let (_, refused) = steps(&old, &moved);
        assert_eq!(refused, ["server1: the database's settings change"]);
        let zone = edit(|s| s.replace("www = [\"lb1\"]", "www = [\"server1\"]"));
        assert!(steps(&old, &zone).1[0].contains("name server"));
    }
}
