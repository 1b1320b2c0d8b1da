//! Design review and diagrams: `webstack check` and `webstack diagram`.
//!
//! `paths` decides whether the site still serves with some components down; the single
//! point of failure search (`findings`) and the availability estimate (`availability`)
//! both rest on it. `capacity` is a simple model of which tier saturates first;
//! `diagram` draws the whiteboard as SVG, Mermaid and DOT.
//!
//! Architecture invariant: pure functions of a `Design` (and, for `--live`, a health map);
//! no sockets, no processes.

pub mod availability;
pub mod capacity;
pub mod diagram;
pub mod findings;
pub mod paths;

pub use availability::{estimate, human_downtime, Availability};
pub use capacity::Mix;
pub use findings::{review, Finding, Kind, Severity};

/// The review as text for people.
pub fn render(
    design: &webstack_topology::Design,
    findings: &[Finding],
    availability: &Availability,
) -> String {
    let mut out = format!(
        "Design review of {} ({}): {} finding(s)\n\n",
        design.name,
        design.fqdn("www"),
        findings.len()
    );
    for f in findings {
        out.push_str(&format!(
            "[{}] {}\n",
            f.severity.to_string().to_uppercase(),
            f.title
        ));
        if !f.servers.is_empty() || !f.components.is_empty() {
            out.push_str(&format!(
                "  where: {}{}{}\n",
                f.servers.join(", "),
                if f.servers.is_empty() || f.components.is_empty() {
                    ""
                } else {
                    "; "
                },
                f.components.join(", ")
            ));
        }
        out.push_str(&format!("  why:   {}\n  fix:   {}\n\n", f.why, f.fix));
    }
    out.push_str(&format!(
        "Availability: {:.5}% ({:.2} nines), about {} of downtime a year, if each server is up {:.3}% of the time ({} over every combination of servers up and down).\n",
        availability.availability * 100.0,
        availability.nines,
        human_downtime(availability.downtime_minutes_per_year),
        availability.per_server * 100.0,
        availability.method
    ));
    out
}

#[cfg(test)]
mod tests;
