//! `webstack lb`: reads a load balancer's backends and changes their admin state at
//! runtime, through its stats listener (HAProxy's runtime API plays this role).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use webstack_topology::Design;

/// The backends a load balancer reports (its `/backends.json`).
pub async fn backends(stats: SocketAddr) -> Result<Vec<Value>> {
    let (status, body) = crate::operator::exchange(stats, "GET", "/backends.json", "").await?;
    if status != 200 {
        bail!("status {status}");
    }
    let v: Value = serde_json::from_str(&body).context("unreadable backends.json")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// The stats listeners of the design's load balancers, or of the one named.
pub fn stats_addresses(design: &Design, only: Option<&str>) -> Result<Vec<(String, SocketAddr)>> {
    let all: Vec<(String, SocketAddr)> = design
        .servers
        .iter()
        .filter_map(|s| {
            s.load_balancer
                .as_ref()
                .map(|lb| (s.name.clone(), SocketAddr::new(s.address, lb.stats_port)))
        })
        .collect();
    if all.is_empty() {
        bail!("design {} has no load balancer", design.name);
    }
    match only {
        None => Ok(all),
        Some(name) => match all.iter().find(|(n, _)| n == name) {
            Some(one) => Ok(vec![one.clone()]),
            None => bail!(
                "{name:?} is not a load balancer of the design (load balancers: {})",
                all.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// Sets a backend's admin state (`ready`, `drain`, `maint`) on every load balancer that
/// has it; returns what each said.
pub async fn set_state(
    design: &Design,
    only: Option<&str>,
    backend: &str,
    state: &str,
) -> Result<Vec<String>> {
    if !["ready", "drain", "maint"].contains(&state) {
        bail!("{state:?} is not a backend state; use ready, drain or maint");
    }
    let mut said = Vec::new();
    for (lb, addr) in stats_addresses(design, only)? {
        let (status, body) =
            crate::operator::exchange(addr, "POST", &format!("/backends/{backend}/state"), state)
                .await
                .with_context(|| format!("load balancer {lb} ({addr})"))?;
        match status {
            200 => said.push(format!("{lb}: {}", body.trim())),
            404 if only.is_none() => {}
            _ => bail!("load balancer {lb}: {}", body.trim()),
        }
    }
    if said.is_empty() {
        bail!("no load balancer of the design has a backend {backend:?}");
    }
    Ok(said)
}

/// A table of every load balancer's backends, for people.
pub async fn render(
    design: &Design,
    layout: &webstack_node::StackLayout,
    only: Option<&str>,
) -> Result<String> {
    let mut rows = vec![[
        "LB".to_string(),
        "BACKEND".into(),
        "ADDRESS".into(),
        "STATE".into(),
        "ACTIVE".into(),
        "REQUESTS".into(),
        "ERRORS".into(),
        "RETRIES".into(),
        "LAST CHECK".into(),
    ]];
    for (lb, addr) in stats_addresses(design, only)? {
        for b in backends(addr)
            .await
            .with_context(|| format!("load balancer {lb} ({addr})"))?
        {
            let state = match (
                b["admin"].as_str().unwrap_or("?"),
                b["up"].as_bool().unwrap_or(false),
            ) {
                ("ready", true) => "UP".to_string(),
                ("ready", false) => "DOWN".to_string(),
                (admin, up) => format!(
                    "{}{}",
                    admin.to_uppercase(),
                    if up { "" } else { " (DOWN)" }
                ),
            };
            let errors = ["connect_errors", "response_errors", "timeouts"]
                .iter()
                .map(|k| b[*k].as_u64().unwrap_or(0))
                .sum::<u64>();
            rows.push([
                lb.clone(),
                b["name"].as_str().unwrap_or("?").to_string(),
                b["address"].as_str().unwrap_or("?").to_string(),
                state,
                b["active"].to_string(),
                b["requests"].to_string(),
                errors.to_string(),
                b["retries"].to_string(),
                b["last_check"].as_str().unwrap_or("").to_string(),
            ]);
        }
    }
    let mut out = crate::status::table(&rows);
    for f in crate::status::floating_reports(design, layout) {
        out.push_str(&crate::status::render_floating(&f));
        out.push('\n');
    }
    Ok(out)
}
