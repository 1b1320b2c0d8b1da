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
    /// (TLS endpoint, seconds until its certificate expires).
    pub certificates: Vec<(String, i64)>,
    /// The node's HTTP metrics, kept between scrapes.
    pub http: Option<crate::HttpMetrics>,
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
    for (listen, seconds) in &r.certificates {
        let l = vec![
            ("server".into(), r.server.clone()),
            ("listen".into(), listen.clone()),
        ];
        expiry.get_or_create(&l).set(*seconds);
    }
    registry.register(
        "tls_certificate_expiry_seconds",
        "Seconds until a TLS endpoint's certificate expires",
        expiry,
    );

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
            certificates: vec![("127.0.0.1:8443".into(), 3600)],
            http: None,
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
        assert!(text.contains(r#"webstack_tls_certificate_expiry_seconds{server="server1",listen="127.0.0.1:8443"} 3600"#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
