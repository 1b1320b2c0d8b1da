//! The design file as written: serde structs that mirror the TOML, nothing more.
//!
//! Every table denies unknown keys, so a typo is an error instead of a silently ignored
//! setting. Keys that a design must have are still `Option` here: a missing key is reported
//! by validation together with every other problem, rather than stopping the parse at the
//! first one. Values that validation may complain about are `Spanned`, so the complaint
//! can name the line they are on.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole design file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDesign {
    pub stack: Option<Spanned<RawStack>>,
    pub dns: Option<Spanned<RawDns>>,
    pub codebase: Option<Spanned<RawCodebase>>,
    #[serde(default)]
    pub servers: BTreeMap<Spanned<String>, Spanned<RawServer>>,
    #[serde(default)]
    pub floating_ips: BTreeMap<Spanned<String>, Spanned<RawFloatingIp>>,
    pub logs: Option<Spanned<RawLogs>>,
}

/// `[logs]`: how big each log of the stack may grow and how many files of it are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    /// `"64MiB"`, `"512KiB"`, `"1GiB"` or a number of bytes.
    pub max_size: Option<Spanned<toml::Value>>,
    pub keep: Option<Spanned<i64>>,
}

/// `[stack]`: what the design is called and which domain it serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    pub name: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    pub description: Option<String>,
}

/// `[dns]`: the authoritative name server of the domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    /// Record name (`www`, `@`) to targets: server names, floating IP names or addresses.
    #[serde(default)]
    pub records: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    /// A monitoring agent in the name server's process.
    pub monitoring: Option<Spanned<RawMonitoring>>,
    /// Secondary name servers (their addresses): each takes the zone from the primary by
    /// zone transfer (AXFR) and is told of changes by NOTIFY.
    #[serde(default)]
    pub secondaries: Vec<Spanned<String>>,
}

/// `[codebase]`: the application the app servers run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCodebase {
    pub builtin: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
}

/// `[servers.NAME]`: one machine of the whiteboard and the components it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub address: Option<Spanned<String>>,
    pub load_balancer: Option<Spanned<RawLoadBalancer>>,
    pub web: Option<Spanned<RawWeb>>,
    pub app: Option<Spanned<RawApp>>,
    pub database: Option<Spanned<RawDatabase>>,
    pub firewall: Option<Spanned<RawFirewall>>,
    pub monitoring: Option<Spanned<RawMonitoring>>,
    pub collector: Option<Spanned<RawCollector>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    pub port: Option<Spanned<u16>>,
    /// `http` (layer 7, the default) or `tcp` (layer 4).
    pub mode: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    #[serde(default)]
    pub backends: Vec<Spanned<String>>,
    /// Backend name to weight (default 1 each).
    #[serde(default)]
    pub weights: BTreeMap<Spanned<String>, Spanned<u32>>,
    /// Backends used only while every other backend is down.
    #[serde(default)]
    pub backup: Vec<Spanned<String>>,
    /// Concurrent requests per backend; more wait in a queue. 0 or absent: no limit.
    pub maxconn: Option<u32>,
    /// How many times a request that could not reach a backend is tried again.
    pub retries: Option<u32>,
    /// `503` (the default) or `fail_open` (use every backend as if it were up).
    pub when_all_down: Option<Spanned<String>>,
    /// Sends a PROXY protocol v2 header to backends (tcp mode).
    pub proxy_protocol: Option<Spanned<bool>>,
    /// The stats page, Prometheus metrics and runtime admin commands.
    pub stats_port: Option<Spanned<u16>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub timeouts: Option<RawLbTimeouts>,
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub interval_ms: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLbTimeouts {
    pub connect_ms: Option<u64>,
    pub server_ms: Option<u64>,
    pub client_ms: Option<u64>,
    pub queue_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub port: Option<Spanned<u16>>,
    pub root: Option<Spanned<String>>,
    #[serde(default)]
    pub upstreams: Vec<Spanned<String>>,
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub port: Option<Spanned<u16>>,
    /// A PEM chain and its key; without them the stack's local CA issues one.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// ACME (RFC 8555) instead: `{ directory = URL, root_ca = PEM file, email = … }`.
    pub acme: Option<Spanned<RawAcme>>,
    /// `Strict-Transport-Security: max-age=…` on HTTPS responses; 0 or absent is off.
    pub hsts_max_age: Option<Spanned<u64>>,
    /// The plain port answers 308 to HTTPS (default true).
    pub redirect_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub root_ca: Option<Spanned<String>>,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub port: Option<Spanned<u16>>,
    pub database: Option<Spanned<String>>,
    pub storage: Option<Spanned<String>>,
    /// Reads go to a replica only while its lag is under this bound.
    pub max_replica_lag_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub port: Option<Spanned<u16>>,
    pub role: Option<Spanned<String>>,
    pub replica_of: Option<Spanned<String>>,
    /// How long a primary waits for a replica's acknowledgement before it goes on
    /// asynchronously.
    pub semi_sync_timeout_ms: Option<Spanned<u64>>,
    /// On a primary: its replicas promote one of them when they and the app servers agree
    /// it is gone.
    pub automatic_failover: Option<Spanned<RawAutomaticFailover>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutomaticFailover {
    /// How long the primary must be unreachable before it counts as failed (`"1s"`).
    pub after: Option<Spanned<String>>,
    /// No second automatic failover within this long of the last (`"5m"`).
    pub hold_off: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    /// Extra sources allowed in, beyond the policy derived from the design.
    #[serde(default)]
    pub allow: Vec<Spanned<RawFirewallRule>>,
    /// Sources refused even where the derived policy would let them in.
    #[serde(default)]
    pub deny: Vec<Spanned<RawFirewallRule>>,
}

/// `{ from = "lb2" | "127.20.0.0/16" | "127.20.0.5" | "any", port = 8000, protocol = "tcp" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewallRule {
    pub from: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    pub port: Option<Spanned<u16>>,
    /// The server whose collector the agent reports to (default: the design's one).
    pub collector: Option<Spanned<String>>,
    /// Records held while the collector cannot be reached.
    pub buffer: Option<Spanned<u32>>,
    /// How often the agent sends (`"1s"`).
    pub interval: Option<Spanned<String>>,
    /// Access records of answered requests sent per second at most (0: every one).
    pub access_records: Option<Spanned<u32>>,
}

/// `[servers.NAME.collector]`: the monitoring service the agents report to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollector {
    pub port: Option<Spanned<u16>>,
    /// How long metric samples are kept (`"15m"`).
    pub window: Option<Spanned<String>>,
    pub max_logs: Option<Spanned<u32>>,
    pub max_traces: Option<Spanned<u32>>,
    /// A command run on every alert that fires or resolves.
    pub notify: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub alerts: Vec<Spanned<RawAlert>>,
}

/// An alert rule: a new one, or a change to (or `disabled = true` of) a default one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub name: Spanned<String>,
    pub expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    pub summary: Option<Spanned<String>>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFloatingIp {
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
    /// Heartbeat interval (`"100ms"`, `"1s"`).
    pub interval: Option<Spanned<String>>,
    /// Per server, 1 to 254 (default: 200, 100, 50, … in the order of `servers`).
    pub priorities: Option<Spanned<BTreeMap<Spanned<String>, Spanned<u8>>>>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<Spanned<String>>,
    /// UDP port the members' heartbeats go to, on each member's own address.
    pub heartbeat_port: Option<Spanned<u16>>,
    /// Priority lost while all of a member's backends are down (keepalived's track weight).
    pub track_weight: Option<Spanned<u8>>,
    /// A command run on every state change, with INSTANCE NAME STATE PRIORITY appended.
    pub notify: Option<Spanned<Vec<String>>>,
}
