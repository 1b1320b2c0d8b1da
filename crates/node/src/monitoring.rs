//! The server's monitoring agent (`[servers.NAME.monitoring]`): the node gathers what it
//! owns (its processes, its state directory, its components' states, its firewall's
//! counters, its certificates) into the agent's readings at every scrape.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_monitoring::{process_usage, Component, Readings};
use webstack_topology::Server;

use crate::status::{ComponentState, StatusFile};
use crate::NodeOptions;

/// The node's HTTP metrics, when its server has an agent (one server per process).
static HTTP: std::sync::OnceLock<Option<webstack_monitoring::HttpMetrics>> =
    std::sync::OnceLock::new();

/// Sets up the HTTP metrics the components record into, if the server has an agent.
pub fn install(server: &Server) {
    let _ = HTTP.set(
        server
            .monitoring
            .as_ref()
            .map(|_| webstack_monitoring::HttpMetrics::new(&server.name)),
    );
}

/// What the web server and the load balancer record their requests into.
pub fn http() -> Option<webstack_monitoring::HttpMetrics> {
    HTTP.get().cloned().flatten()
}

pub fn start(
    opts: &NodeOptions,
    server: &Server,
    port: u16,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(server.address, port);
    let listener = crate::firewall::bind(addr)?;
    status.add("monitoring", vec![addr], ComponentState::Ready);
    eprintln!("monitoring: agent on http://{addr}/metrics");
    let name = server.name.clone();
    let dir = opts.layout.server_dir(&server.name);
    let status = status.clone();
    let readings = move || gather(&name, &dir, &status);
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        webstack_monitoring::run(listener, readings, shutdown).await;
        Ok(())
    });
    Ok(())
}

fn gather(server: &str, dir: &Path, status: &StatusFile) -> Readings {
    let node = status.snapshot();
    let mut processes = Vec::new();
    if let Some(usage) = process_usage(node.pid) {
        processes.push(("node".to_string(), usage));
    }
    for c in &node.components {
        if let Some(usage) = c.child_pid.and_then(process_usage) {
            let name = if c.kind == "database" {
                "mariadbd"
            } else {
                c.kind.as_str()
            };
            processes.push((name.to_string(), usage));
        }
    }
    let components = node
        .components
        .iter()
        .map(|c| Component {
            kind: c.kind.clone(),
            state: format!("{:?}", c.state).to_lowercase(),
        })
        .collect();
    let firewall = match (crate::firewall::current(), &node.firewall) {
        (Some(fw), Some(counts)) => counts
            .iter()
            .enumerate()
            .map(|(i, n)| match fw.policy.rules.get(i) {
                Some(rule) => (
                    format!("{}. {}", i + 1, rule.because),
                    match rule.action {
                        webstack_firewall::Action::Allow => "allow",
                        webstack_firewall::Action::Deny => "deny",
                    },
                    *n,
                ),
                None => ("default deny".to_string(), "deny", *n),
            })
            .collect(),
        _ => Vec::new(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let certificates = node
        .components
        .iter()
        .flat_map(|c| &c.certificates)
        .map(|cert| (cert.listen.to_string(), cert.not_after as i64 - now))
        .collect();
    Readings {
        server: server.to_string(),
        processes,
        state_disk_bytes: disk_usage(dir),
        components,
        firewall,
        certificates,
        http: http(),
    }
}

/// Bytes of the files under `dir` (not following symlinks).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
