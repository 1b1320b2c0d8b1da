//! The agent's metrics, built fresh from the readings at every scrape (they are few, and a
//! scrape every few seconds costs microseconds), encoded as OpenMetrics text.

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::process::ProcessUsage;

/// Prometheus 3 refuses a scrape without it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape reports.
#[derive(Clone, Default)]
pub struct Readings {
    pub server: String,
    /// (`node`, `mariadbd`, `app`…, its usage).
    pub processes: Vec<(String, ProcessUsage)>,
    pub state_disk_bytes: u64,
    pub components: Vec<Component>,
    /// (rule text, allow or deny, connections decided), the default deny last.
    pub firewall: Vec<(String, &'static str, u64)>,
    pub certificates: Vec<CertificateReading>,
    /// The node's HTTP metrics, kept between scrapes.
    pub http: Option<crate::HttpMetrics>,
    /// Free share (0 to 1) of the filesystem that holds the server's state.
    pub state_filesystem_free_ratio: Option<f64>,
    pub backends: Vec<BackendReading>,
    pub database: Option<DatabaseReading>,
    pub agent: Option<AgentReading>,
    pub floating: Option<FloatingReading>,
    /// The name server's answers by response code.
    pub dns_answers: Vec<(String, u64)>,
}

/// The server's part in a floating IP's election.
#[derive(Debug, Clone, Default)]
pub struct FloatingReading {
    pub name: String,
    /// `MASTER`, `BACKUP`, `FAULT`.
    pub state: String,
    pub priority: u8,
    pub holding: bool,
    pub transitions: u64,
    pub last_takeover: Option<f64>,
}

/// A load balancer's backend.
#[derive(Debug, Clone)]
pub struct BackendReading {
    pub name: String,
    pub up: bool,
    pub active: u64,
    pub errors: u64,
    pub retries: u64,
}

/// A database's replication, as its node last read it.
#[derive(Debug, Clone, Default)]
pub struct DatabaseReading {
    pub role: String,
    pub lag_seconds: Option<f64>,
    /// (`io` or `sql`, running).
    pub threads: Vec<(&'static str, bool)>,
    /// Primaries: semi-sync acknowledged by a replica.
    pub semi_sync_on: Option<bool>,
    pub connections: Option<u64>,
}

/// The agent's own delivery.
#[derive(Debug, Clone, Default)]
pub struct AgentReading {
    pub buffered: u64,
    /// (record kind, dropped).
    pub dropped: Vec<(&'static str, u64)>,
    pub delivered: u64,
    pub lost_at_restart: u64,
    /// Access records the per-second limit left unsent.
    pub access_records_skipped: u64,
}

/// A TLS endpoint's certificate.
#[derive(Debug, Clone)]
pub struct CertificateReading {
    pub listen: String,
    /// `local CA`, `files`, `acme`.
    pub source: String,
    pub expires_in: i64,
    /// Negative once renewal is late.
    pub renewal_due_in: i64,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub kind: String,
    /// `ready`, `starting`, `restarting`, `stopped`.
    pub state: String,
}

type Labels = Vec<(String, String)>;

/// The readings as OpenMetrics text, ending in `# EOF`.
pub fn encode(r: &Readings) -> String {
    let mut registry = Registry::with_prefix("webstack");
    let cpu = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let rss = Family::<Labels, Gauge>::default();
    let fds = Family::<Labels, Gauge>::default();
    let threads = Family::<Labels, Gauge>::default();
    let labels = |process: &str| -> Labels {
        vec![
            ("server".into(), r.server.clone()),
            ("process".into(), process.to_string()),
        ]
    };
    for (name, usage) in &r.processes {
        let l = labels(name);
        // One get_or_create per statement: two in one expression deadlock (client_rust#231).
        cpu.get_or_create(&l).inc_by(usage.cpu_seconds);
        rss.get_or_create(&l).set(usage.resident_bytes as i64);
        fds.get_or_create(&l).set(usage.open_fds as i64);
        threads.get_or_create(&l).set(usage.threads as i64);
    }
    registry.register(
        "process_cpu_seconds",
        "CPU time of a process of the server (user + system)",
        cpu,
    );
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of a process of the server",
        rss,
    );
    registry.register(
        "process_open_fds",
        "Open file descriptors of a process of the server",
        fds,
    );
    registry.register(
        "process_threads",
        "Threads of a process of the server",
        threads,
    );

    let disk = Family::<Labels, Gauge>::default();
    disk.get_or_create(&vec![("server".into(), r.server.clone())])
        .set(r.state_disk_bytes as i64);
    registry.register(
        "state_disk_bytes",
        "Disk used by the server's state (data, logs, sockets)",
        disk,
    );

    let up = Family::<Labels, Gauge>::default();
    for c in &r.components {
        let l = vec![
            ("server".into(), r.server.clone()),
            ("component".into(), c.kind.clone()),
            ("state".into(), c.state.clone()),
        ];
        up.get_or_create(&l).set(i64::from(c.state == "ready"));
    }
    registry.register(
        "component_ready",
        "1 while a component of the server is ready",
        up,
    );

    let firewall = Family::<Labels, Counter>::default();
    for (rule, action, count) in &r.firewall {
        let l = vec![
            ("server".into(), r.server.clone()),
            ("rule".into(), rule.clone()),
            ("action".into(), action.to_string()),
        ];
        firewall.get_or_create(&l).inc_by(*count);
    }
    registry.register(
        "firewall_connections",
        "Connections the server's firewall decided, by rule",
        firewall,
    );

    let expiry = Family::<Labels, Gauge>::default();
    let renewal = Family::<Labels, Gauge>::default();
    for c in &r.certificates {
        let l = vec![
            ("server".into(), r.server.clone()),
            ("listen".into(), c.listen.clone()),
            ("source".into(), c.source.clone()),
        ];
        expiry.get_or_create(&l).set(c.expires_in);
        renewal.get_or_create(&l).set(c.renewal_due_in);
    }
    registry.register(
        "tls_certificate_expiry_seconds",
        "Seconds until a TLS endpoint's certificate expires",
        expiry,
    );
    registry.register(
        "tls_certificate_renewal_due_seconds",
        "Seconds until a TLS endpoint's certificate is due for renewal (negative: late)",
        renewal,
    );

    if let Some(ratio) = r.state_filesystem_free_ratio {
        let free = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        free.get_or_create(&vec![("server".into(), r.server.clone())])
            .set(ratio);
        registry.register(
            "state_filesystem_free_ratio",
            "Free share of the filesystem holding the server's state",
            free,
        );
    }

    if !r.backends.is_empty() {
        let up = Family::<Labels, Gauge>::default();
        let active = Family::<Labels, Gauge>::default();
        let errors = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        for b in &r.backends {
            let l = vec![
                ("server".into(), r.server.clone()),
                ("backend".into(), b.name.clone()),
            ];
            up.get_or_create(&l).set(i64::from(b.up));
            active.get_or_create(&l).set(b.active as i64);
            errors.get_or_create(&l).inc_by(b.errors);
            retries.get_or_create(&l).inc_by(b.retries);
        }
        registry.register(
            "lb_backend_up",
            "1 while a load balancer sends to the backend",
            up,
        );
        registry.register(
            "lb_backend_active",
            "Requests in flight to the backend",
            active,
        );
        registry.register(
            "lb_upstream_errors",
            "Connect errors, broken answers and timeouts of the backend",
            errors,
        );
        registry.register(
            "lb_retries",
            "Requests tried again on another backend after this one failed",
            retries,
        );
    }

    if let Some(db) = &r.database {
        let server = || ("server".to_string(), r.server.clone());
        let role = Family::<Labels, Gauge>::default();
        role.get_or_create(&vec![server(), ("role".into(), db.role.clone())])
            .set(1);
        registry.register("db_role", "The database's replication role", role);
        if let Some(n) = db.connections {
            let g = Family::<Labels, Gauge>::default();
            g.get_or_create(&vec![server()]).set(n as i64);
            registry.register(
                "db_connections",
                "Client connections open on the database",
                g,
            );
        }
        if let Some(lag) = db.lag_seconds {
            let g = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            g.get_or_create(&vec![server()]).set(lag);
            registry.register(
                "db_replication_lag_seconds",
                "Age of the newest primary heartbeat the replica applied",
                g,
            );
        }
        if !db.threads.is_empty() {
            let g = Family::<Labels, Gauge>::default();
            for (thread, running) in &db.threads {
                g.get_or_create(&vec![server(), ("thread".into(), thread.to_string())])
                    .set(i64::from(*running));
            }
            registry.register(
                "db_replica_thread_running",
                "1 while the replica's IO or SQL thread runs",
                g,
            );
        }
        if let Some(on) = db.semi_sync_on {
            let g = Family::<Labels, Gauge>::default();
            g.get_or_create(&vec![server()]).set(i64::from(on));
            registry.register(
                "db_semi_sync_on",
                "1 while the primary's commits wait for a replica's acknowledgement",
                g,
            );
        }
    }

    if !r.dns_answers.is_empty() {
        let answers = Family::<Labels, Counter>::default();
        for (code, n) in &r.dns_answers {
            let l = vec![
                ("server".into(), r.server.clone()),
                ("rcode".into(), code.clone()),
            ];
            answers.get_or_create(&l).inc_by(*n);
        }
        registry.register(
            "dns_answers",
            "Answers of the name server, by response code",
            answers,
        );
    }

    if let Some(f) = &r.floating {
        let l = vec![
            ("server".into(), r.server.clone()),
            ("instance".into(), f.name.clone()),
        ];
        let state = Family::<Labels, Gauge>::default();
        for s in ["MASTER", "BACKUP", "FAULT"] {
            let mut ls = l.clone();
            ls.push(("state".into(), s.to_string()));
            state.get_or_create(&ls).set(i64::from(f.state == s));
        }
        registry.register(
            "vrrp_state",
            "1 for the state this member of the floating IP is in",
            state,
        );
        let priority = Family::<Labels, Gauge>::default();
        priority.get_or_create(&l).set(i64::from(f.priority));
        registry.register("vrrp_priority", "The member's priority in effect", priority);
        let holding = Family::<Labels, Gauge>::default();
        holding.get_or_create(&l).set(i64::from(f.holding));
        registry.register(
            "vrrp_holding",
            "1 while this member has the floating address's ports bound",
            holding,
        );
        let transitions = Family::<Labels, Counter>::default();
        transitions.get_or_create(&l).inc_by(f.transitions);
        registry.register(
            "vrrp_transitions",
            "State changes of this member",
            transitions,
        );
        if let Some(t) = f.last_takeover {
            let g = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            g.get_or_create(&l).set(t);
            registry.register(
                "vrrp_last_takeover_timestamp_seconds",
                "When this member last became master (Unix time)",
                g,
            );
        }
    }

    if let Some(a) = &r.agent {
        let l = vec![("server".into(), r.server.clone())];
        let buffered = Family::<Labels, Gauge>::default();
        buffered.get_or_create(&l).set(a.buffered as i64);
        registry.register(
            "agent_buffered_records",
            "Records waiting for the collector",
            buffered,
        );
        let dropped = Family::<Labels, Counter>::default();
        for (kind, n) in &a.dropped {
            let l = vec![
                ("server".into(), r.server.clone()),
                ("kind".into(), kind.to_string()),
            ];
            dropped.get_or_create(&l).inc_by(*n);
        }
        registry.register(
            "agent_dropped_records",
            "Records refused because the buffer was full",
            dropped,
        );
        let delivered = Family::<Labels, Counter>::default();
        delivered.get_or_create(&l).inc_by(a.delivered);
        registry.register(
            "agent_delivered_records",
            "Records the collector acknowledged",
            delivered,
        );
        let skipped = Family::<Labels, Counter>::default();
        skipped.get_or_create(&l).inc_by(a.access_records_skipped);
        registry.register(
            "agent_access_records_skipped",
            "Access records of requests that did not fail, beyond the per-second limit (counted in the HTTP metrics, not sent)",
            skipped,
        );
        let lost = Family::<Labels, Gauge>::default();
        lost.get_or_create(&l).set(a.lost_at_restart as i64);
        registry.register(
            "agent_lost_at_restart_records",
            "Records the previous run of the agent took but never had acknowledged",
            lost,
        );
    }

    if let Some(http) = &r.http {
        http.register(&mut registry);
    }

    let mut out = String::new();
    text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_with_labels() {
        let r = Readings {
            server: "server1".into(),
            processes: vec![(
                "mariadbd".into(),
                ProcessUsage {
                    cpu_seconds: 1.5,
                    resident_bytes: 4096,
                    open_fds: 7,
                    threads: 3,
                },
            )],
            state_disk_bytes: 10,
            components: vec![Component {
                kind: "web".into(),
                state: "ready".into(),
            }],
            firewall: vec![("default deny".into(), "deny", 4)],
            certificates: vec![CertificateReading {
                listen: "127.0.0.1:8443".into(),
                source: "acme".into(),
                expires_in: 3600,
                renewal_due_in: -5,
            }],
            ..Default::default()
        };
        let text = encode(&r);
        assert!(text.contains(r#"webstack_process_resident_memory_bytes{server="server1",process="mariadbd"} 4096"#), "{text}");
        assert!(
            text.contains(
                r#"webstack_process_cpu_seconds_total{server="server1",process="mariadbd"} 1.5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"webstack_component_ready{server="server1",component="web",state="ready"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"webstack_firewall_connections_total{server="server1",rule="default deny",action="deny"} 4"#), "{text}");
        assert!(text.contains(r#"webstack_tls_certificate_expiry_seconds{server="server1",listen="127.0.0.1:8443",source="acme"} 3600"#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
