//! The server's monitoring agent (`[servers.NAME.monitoring]`): the node gathers what it
//! owns (its processes, its state directory, its components' states, its firewall's
//! counters, its certificates) into the agent's readings at every scrape.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_monitoring::{
    encode, filesystem_free_ratio, process_usage, Agent, AgentReading, BackendReading,
    CertificateReading, Component, DatabaseReading, FloatingReading, Readings,
};
use webstack_topology::Monitoring;

use crate::status::{ComponentState, StatusFile};
use crate::NodeOptions;

/// The node's HTTP metrics, when its server has an agent (one server per process).
static HTTP: std::sync::OnceLock<Option<webstack_monitoring::HttpMetrics>> =
    std::sync::OnceLock::new();

/// Sets up the HTTP metrics the components record into, if the server has an agent.
pub fn install(server: &str, monitoring: Option<&Monitoring>) {
    let _ = HTTP.set(monitoring.map(|_| webstack_monitoring::HttpMetrics::new(server)));
}

/// The name server's answers by response code, when this process is the name server.
static DNS: std::sync::OnceLock<Arc<webstack_dns::AnswerCounts>> = std::sync::OnceLock::new();

pub fn watch_dns(counts: Arc<webstack_dns::AnswerCounts>) {
    let _ = DNS.set(counts);
}

/// What the web server and the load balancer record their requests into.
pub fn http() -> Option<webstack_monitoring::HttpMetrics> {
    HTTP.get().cloned().flatten()
}

/// The agent's delivery to its collector, once started.
static AGENT: std::sync::OnceLock<Arc<Agent>> = std::sync::OnceLock::new();
/// Starts the agent of `server` (a server of the design, or the name server's process)
/// on its `address`.
pub fn start(
    opts: &NodeOptions,
    server: &str,
    address: IpAddr,
    m: &Monitoring,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(address, m.port);
    let listener = crate::firewall::bind(addr)?;
    status.add("monitoring", vec![addr], ComponentState::Ready);
    eprintln!("monitoring: agent on http://{addr}/metrics");
    let dir = opts.layout.server_dir(server);
    let reading = {
        let (name, dir, status) = (server.to_string(), dir.clone(), status.clone());
        Arc::new(move || gather(&name, &dir, &status))
    };
    if let Some(target) = m
        .collector
        .as_ref()
        .and_then(|c| opts.design.server(c))
        .and_then(|s| Some(SocketAddr::new(s.address, s.collector.as_ref()?.port)))
    {
        let agent = Arc::new(Agent::new(server, m.buffer, dir.join("agent.json")));
        let _ = AGENT.set(agent.clone());
        if let Some(http) = http() {
            http.limit_access_records(m.access_records);
            http.ship_to(agent.outbox.clone());
            webstack_logs::tap_output(Box::new(move |line| {
                let line = String::from_utf8_lossy(line);
                let (component, level) = classify(&line);
                http.log(component, level, line.trim_end());
            }));
        }
        eprintln!(
            "monitoring: reporting to the collector at {target} every {:?} (buffer: {} records)",
            m.interval, m.buffer
        );
        let reading = reading.clone();
        let metrics = move || encode(&reading());
        let (local, interval, shutdown) = (address, m.interval, shutdown.clone());
        tasks.spawn(async move {
            agent.run(target, local, interval, metrics, shutdown).await;
            Ok(())
        });
    }
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        webstack_monitoring::run(listener, move || reading(), shutdown).await;
        Ok(())
    });
    Ok(())
}

/// The component a log line is about (its `web:` prefix) and how bad it sounds.
fn classify(line: &str) -> (&'static str, &'static str) {
    let lower = line.to_ascii_lowercase();
    let level = if ["error", "failed", "cannot", "panicked", "refused"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "error"
    } else if ["warn", "retry", "lost", "gave up"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "warning"
    } else {
        "info"
    };
    let component = [
        ("load balancer", "load_balancer"),
        ("web", "web"),
        ("app", "app"),
        ("database", "database"),
        ("monitoring", "monitoring"),
        ("collector", "collector"),
        ("firewall", "firewall"),
        ("tls", "tls"),
    ]
    .iter()
    .find(|(prefix, _)| lower.starts_with(prefix))
    .map_or("node", |(_, c)| c);
    (component, level)
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
        .map(|cert| CertificateReading {
            listen: cert.listen.to_string(),
            source: cert.source.clone(),
            expires_in: cert.not_after as i64 - now,
            renewal_due_in: cert.renew_at as i64 - now,
        })
        .collect();
    let backends = crate::pool::current()
        .map(|pool| {
            pool.snapshot()
                .into_iter()
                .map(|b| BackendReading {
                    up: b.up && b.admin == webstack_load_balancer::AdminState::Ready,
                    active: u64::from(b.active),
                    errors: b.connect_errors + b.response_errors + b.timeouts,
                    retries: b.retries,
                    name: b.name,
                })
                .collect()
        })
        .unwrap_or_default();
    let database = node
        .components
        .iter()
        .find_map(|c| c.replication.as_ref())
        .map(|r| DatabaseReading {
            role: r.role.clone(),
            lag_seconds: r.lag_ms.map(|ms| ms / 1000.0),
            threads: [("io", r.io_running), ("sql", r.sql_running)]
                .into_iter()
                .filter_map(|(t, running)| Some((t, running?)))
                .collect(),
            semi_sync_on: r.semi_sync.as_ref().map(|s| s == "on"),
            connections: r.connections,
        });
    let agent = AGENT.get().map(|a| AgentReading {
        buffered: a.outbox.len() as u64,
        dropped: a.outbox.dropped_by_kind(),
        delivered: a.delivered.load(std::sync::atomic::Ordering::Relaxed),
        lost_at_restart: a.lost_at_restart,
        access_records_skipped: http().map_or(0, |h| h.access_records_skipped()),
    });
    Readings {
        server: server.to_string(),
        processes,
        state_disk_bytes: disk_usage(dir),
        components,
        firewall,
        certificates,
        http: http(),
        state_filesystem_free_ratio: filesystem_free_ratio(dir),
        backends,
        database,
        agent,
        dns_answers: DNS.get().map(|c| c.snapshot()).unwrap_or_default(),
        floating: node.floating.as_ref().map(|f| FloatingReading {
            name: f.name.clone(),
            state: f.state.clone(),
            priority: f.priority,
            holding: f.holding,
            transitions: f.transitions,
            last_takeover: f.last_takeover,
        }),
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
