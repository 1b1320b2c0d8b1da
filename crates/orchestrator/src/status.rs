//! `webstack status`: the stack's servers, their components, listeners, pids and live
//! health, probed in each component's own protocol.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use webstack_node::{read_status, ComponentState, StackLayout};
use webstack_topology::{Codebase, Design};

use crate::health::{probe_dns, probe_http, probe_mysql, Health};
use crate::record::StackRecord;

#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    pub stack: String,
    pub design: String,
    pub state_dir: String,
    /// The name users type, and where its HTTP is served.
    pub entry: Option<(String, SocketAddr)>,
    pub dns: SocketAddr,
    pub servers: Vec<ServerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<FloatingReport>,
}

/// A floating IP: who holds it, and each member's view.
#[derive(Debug, Clone, Serialize)]
pub struct FloatingReport {
    pub name: String,
    pub address: IpAddr,
    /// The member that has the address's ports bound (two would be a bug: the kernel
    /// lets one socket bind a port).
    pub holders: Vec<String>,
    /// (server, its status), for the members that are running.
    pub members: Vec<(String, webstack_node::FloatingStatus)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub address: IpAddr,
    pub pid: Option<u32>,
    pub alive: bool,
    pub components: Vec<ComponentReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentReport {
    pub kind: String,
    pub listen: SocketAddr,
    pub state: Option<ComponentState>,
    pub child_pid: Option<u32>,
    pub health: Health,
    /// TLS endpoints of the component and the certificate each serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<webstack_node::CertificateStatus>,
    /// App servers: the release they run (`webstack deploy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl StackStatus {
    pub fn healthy(&self) -> bool {
        self.servers
            .iter()
            .all(|s| s.alive && s.components.iter().all(|c| c.health.healthy))
            && self.floating_ips.iter().all(|f| f.holders.len() == 1)
    }
}

/// The components a server of the design runs, with the port each listens on.
pub fn expected_components(design: &Design, server: &str) -> Vec<(&'static str, SocketAddr)> {
    if let Some(address) = design.dns.name_server(server) {
        let dns = &design.dns;
        let mut out = vec![("dns", SocketAddr::new(address, dns.port))];
        if let Some(m) = &dns.monitoring {
            out.push(("monitoring", SocketAddr::new(address, m.port)));
        }
        return out;
    }
    let Some(s) = design.server(server) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(lb) = &s.load_balancer {
        out.push(("load_balancer", SocketAddr::new(s.address, lb.port)));
    }
    if let Some(w) = &s.web {
        out.push(("web", SocketAddr::new(s.address, w.port)));
    }
    if let Some(a) = &s.app {
        out.push(("app", SocketAddr::new(s.address, a.port)));
    }
    if let Some(d) = &s.database {
        out.push(("database", SocketAddr::new(s.address, d.port)));
    }
    if let Some(c) = &s.collector {
        out.push(("collector", SocketAddr::new(s.address, c.port)));
    }
    if let Some(m) = &s.monitoring {
        out.push(("monitoring", SocketAddr::new(s.address, m.port)));
    }
    out
}

/// The process names of a design in start order: the name server first.
pub fn process_names(design: &Design) -> Vec<String> {
    design
        .dns
        .name_servers()
        .into_iter()
        .map(|(name, _)| name)
        .chain(design.servers.iter().map(|s| s.name.clone()))
        .collect()
}

pub async fn collect(
    design: &Design,
    layout: &StackLayout,
    record: &StackRecord,
    state_dir: &std::path::Path,
) -> StackStatus {
    let host = design
        .entry_point()
        .map(|(h, _)| h)
        .unwrap_or_else(|| design.fqdn("www"));
    let mut servers = Vec::new();
    for name in process_names(design) {
        let pid = record
            .nodes
            .iter()
            .find(|n| n.server == name)
            .map(|n| n.pid);
        let alive = pid.is_some_and(webstack_net::process::alive);
        let node = read_status(&layout.node_status(&name)).filter(|s| Some(s.pid) == pid);
        let mut components = Vec::new();
        for (kind, listen) in expected_components(design, &name) {
            let reported = node
                .as_ref()
                .and_then(|n| n.components.iter().find(|c| c.kind == kind));
            let health = if !alive {
                Health {
                    healthy: false,
                    detail: "the server's process is not running".into(),
                }
            } else {
                probe(design, kind, listen, &host, reported).await
            };
            components.push(ComponentReport {
                kind: kind.to_string(),
                listen,
                state: reported.map(|c| c.state),
                child_pid: reported.and_then(|c| c.child_pid),
                health,
                certificates: reported.map(|c| c.certificates.clone()).unwrap_or_default(),
                version: reported.and_then(|c| c.version.clone()),
            });
        }
        let address = design.dns.name_server(&name).unwrap_or_else(|| {
            design
                .server(&name)
                .map(|s| s.address)
                .unwrap_or(design.dns.address)
        });
        servers.push(ServerStatus {
            name,
            address,
            pid,
            alive,
            components,
        });
    }
    StackStatus {
        stack: record.name.clone(),
        design: record.design.clone(),
        state_dir: state_dir.display().to_string(),
        entry: design.entry_point(),
        dns: SocketAddr::new(design.dns.address, design.dns.port),
        servers,
        floating_ips: floating_reports(design, layout),
    }
}

/// Each floating IP as its running members report it (node.json of live nodes).
pub fn floating_reports(design: &Design, layout: &StackLayout) -> Vec<FloatingReport> {
    design
        .floating_ips
        .iter()
        .map(|f| {
            let members: Vec<(String, webstack_node::FloatingStatus)> = f
                .servers
                .iter()
                .filter_map(|name| {
                    let node = read_status(&layout.node_status(name))?;
                    let floating = node
                        .floating
                        .filter(|_| webstack_net::process::alive(node.pid))?;
                    Some((name.clone(), floating))
                })
                .collect();
            FloatingReport {
                name: f.name.clone(),
                address: f.address,
                holders: members
                    .iter()
                    .filter(|(_, s)| s.holding)
                    .map(|(n, _)| n.clone())
                    .collect(),
                members,
            }
        })
        .collect()
}

/// `floating IP vip 127.10.3.100: held by lb1 (MASTER, priority 200); lb2 BACKUP 100`.
pub fn render_floating(f: &FloatingReport) -> String {
    let holder = match f.holders.as_slice() {
        [] => "held by nobody".to_string(),
        [one] => format!("held by {one}"),
        many => format!("HELD BY {} AT ONCE", many.join(" AND ")),
    };
    let members: Vec<String> = f
        .members
        .iter()
        .map(|(n, s)| {
            let tracked = if s.priority < s.base_priority {
                format!(" (of {}: its backends are down)", s.base_priority)
            } else {
                String::new()
            };
            let takeover = s
                .last_takeover
                .map(|t| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(t, |d| d.as_secs_f64());
                    format!(", last took over {:.1}s ago", (now - t).max(0.0))
                })
                .unwrap_or_default();
            format!(
                "{n} {} priority {}{tracked}, {} transitions{takeover}",
                s.state, s.priority, s.transitions
            )
        })
        .collect();
    format!(
        "floating IP {} {}: {holder}; {}",
        f.name,
        f.address,
        members.join("; ")
    )
}

async fn probe(
    design: &Design,
    kind: &str,
    listen: SocketAddr,
    host: &str,
    reported: Option<&webstack_node::ComponentStatus>,
) -> Health {
    let state = reported.map(|c| c.state);
    match kind {
        "dns" => probe_dns(listen, host).await,
        "monitoring" | "collector" => probe_http(listen, host, "/metrics", 300).await,
        // The web server's own health path: its app servers have a probe of their own.
        "web" => probe_http(listen, host, webstack_web::HEALTH_PATH, 300).await,
        "app" => {
            let (path, fail_from) = app_health_check(design);
            probe_http(listen, host, path, fail_from).await
        }
        "load_balancer" => {
            let stats = design.servers.iter().find_map(|s| {
                s.load_balancer
                    .as_ref()
                    .filter(|_| s.address == listen.ip())
                    .map(|lb| SocketAddr::new(s.address, lb.stats_port))
            });
            match stats {
                Some(stats) => crate::health::probe_lb(stats).await,
                None => Health {
                    healthy: false,
                    detail: "no stats port in the design".into(),
                },
            }
        }
        "database" => {
            let h = probe_mysql(listen).await;
            match (state, reported.and_then(|c| c.replication.as_ref())) {
                (Some(ComponentState::Ready), Some(r)) if h.healthy => replication_health(r),
                (Some(ComponentState::Ready), _) => h,
                (Some(other), _) if h.healthy => Health {
                    healthy: false,
                    detail: format!("answers, but the node reports it {other:?}"),
                },
                _ => h,
            }
        }
        _ => Health {
            healthy: false,
            detail: format!("no probe for {kind}"),
        },
    }
}

/// A replica this far behind is still catching up, not serving.
const CAUGHT_UP_MS: f64 = 5000.0;

/// A replicated database is healthy when replication works: a primary while a replica
/// acknowledges its writes (semi-sync on), a replica while it fetches and applies them.
/// Until then, acknowledged writes are not yet protected, which `up` must not hide.
fn replication_health(r: &webstack_database::ReplicationStatus) -> Health {
    match r.role.as_str() {
        "primary" if r.semi_sync.as_deref() == Some("on") => Health {
            healthy: true,
            detail: format!("primary at {}, semi-sync on", r.gtid_position),
        },
        "primary" => Health {
            healthy: false,
            detail: format!(
                "primary at {}, semi-sync off: no replica acknowledges writes",
                r.gtid_position
            ),
        },
        // A replica counts once it has caught up to a heartbeat: everything the primary
        // set up at its start (users, grants, tables) has been applied by then.
        "replica"
            if r.io_running == Some(true)
                && r.sql_running == Some(true)
                && r.lag_ms.is_some_and(|l| l < CAUGHT_UP_MS) =>
        {
            Health {
                healthy: true,
                detail: format!(
                    "replica at {}, lag {:.0} ms",
                    r.gtid_position,
                    r.lag_ms.unwrap_or_default()
                ),
            }
        }
        "replica" if r.io_running == Some(true) && r.sql_running == Some(true) => Health {
            healthy: false,
            detail: format!(
                "replica catching up (at {}, lag {})",
                r.gtid_position,
                r.lag_ms
                    .map(|l| format!("{l:.0} ms"))
                    .unwrap_or_else(|| "unknown".into())
            ),
        },
        "replica" => Health {
            healthy: false,
            detail: format!(
                "replica not replicating: {}",
                r.last_error
                    .clone()
                    .unwrap_or_else(|| "threads stopped".into())
            ),
        },
        other => Health {
            healthy: true,
            detail: format!("{other} at {} (read-only until rebuilt)", r.gtid_position),
        },
    }
}

/// The status as a table for people.
pub fn render(status: &StackStatus) -> String {
    let mut rows = vec![[
        "SERVER".to_string(),
        "ADDRESS".into(),
        "PID".into(),
        "COMPONENT".into(),
        "LISTEN".into(),
        "HEALTH".into(),
    ]];
    for s in &status.servers {
        for (i, c) in s.components.iter().enumerate() {
            let pid = match (i, s.pid, c.child_pid) {
                (0, Some(p), Some(child)) => format!("{p} (+{child})"),
                (0, Some(p), None) => p.to_string(),
                (_, _, Some(child)) => format!("(+{child})"),
                _ => String::new(),
            };
            let health = format!(
                "{} {}{}",
                if c.health.healthy { "ok  " } else { "DOWN" },
                c.health.detail,
                c.version
                    .as_ref()
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default()
            );
            rows.push([
                if i == 0 {
                    s.name.clone()
                } else {
                    String::new()
                },
                if i == 0 {
                    s.address.to_string()
                } else {
                    String::new()
                },
                if s.alive || i > 0 { pid } else { "dead".into() },
                c.kind.clone(),
                c.listen.to_string(),
                health,
            ]);
            for cert in &c.certificates {
                rows.push([
                    String::new(),
                    String::new(),
                    String::new(),
                    "  https".into(),
                    cert.listen.to_string(),
                    certificate_line(cert, std::time::SystemTime::now()),
                ]);
            }
        }
    }
    let mut out = table(&rows);
    for f in &status.floating_ips {
        out.push_str(&render_floating(f));
        out.push('\n');
    }
    out
}

/// `certificate for www.foobar.com, 127.10.2.10 (local CA: webstack local CA …), expires
/// in 11h 59m, renewed in 7h 59m`.
fn certificate_line(cert: &webstack_node::CertificateStatus, now: std::time::SystemTime) -> String {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let span = |at: u64| {
        let secs = at.saturating_sub(now);
        match secs {
            0 => "now".to_string(),
            s if s >= 86_400 => format!("in {}d {}h", s / 86_400, s % 86_400 / 3600),
            s => format!("in {}h {:02}m", s / 3600, s % 3600 / 60),
        }
    };
    format!(
        "certificate for {} from {} ({}), expires {}, renewed {}",
        cert.names.join(", "),
        cert.source,
        cert.issuer,
        span(cert.not_after),
        span(cert.renew_at)
    )
}

/// Left-aligned columns, two spaces apart.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An app server's health check: the built-in app's `/health` (below 300), or the home
/// page of a command of the user's (anything below 500 means it serves).
pub(crate) fn app_health_check(design: &Design) -> (&'static str, u16) {
    match design.codebase {
        Codebase::Builtin(_) => ("/health", 300),
        Codebase::Path { .. } => ("/", 500),
    }
}
