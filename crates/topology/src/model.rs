//! The validated design: what the rest of webstack works with.
//!
//! These types are not the file format (see `raw.rs`); every value here has been checked,
//! every reference points at something that exists, and names are resolved to addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A whole validated design: one site and the servers that serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub name: String,
    /// The zone, for example `foobar.com`.
    pub domain: String,
    pub description: Option<String>,
    pub dns: Dns,
    pub codebase: Codebase,
    /// In the order of their names, so every listing of a design is stable.
    pub servers: Vec<Server>,
    pub floating_ips: Vec<FloatingIp>,
    /// How every log of the stack is rotated.
    pub logs: LogSettings,
    /// The folder relative paths in the design are taken from (the design file's folder).
    pub base_dir: PathBuf,
}

/// The authoritative name server of the domain. It runs as a process of its own, standing
/// in for the registrar's DNS of the whiteboard, which is why it is not one of the servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    pub address: IpAddr,
    pub port: u16,
    pub records: Vec<ARecord>,
    /// An agent in each name server's process (its queries by response code).
    pub monitoring: Option<Monitoring>,
    /// Secondary name servers, on the same port: processes `dns2`, `dns3`, … in order.
    pub secondaries: Vec<IpAddr>,
}

impl Dns {
    /// Every name server of the zone as (process name, address): the primary (`dns`)
    /// first, then the secondaries (`dns2`, `dns3`, …).
    pub fn name_servers(&self) -> Vec<(String, IpAddr)> {
        std::iter::once((crate::DNS_PROCESS_NAME.to_string(), self.address))
            .chain(
                self.secondaries
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| (format!("{}{}", crate::DNS_PROCESS_NAME, i + 2), *ip)),
            )
            .collect()
    }

    /// The address of name server process `name`, if it is one.
    pub fn name_server(&self, name: &str) -> Option<IpAddr> {
        self.name_servers()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| ip)
    }
}

/// One name of the zone and the targets its A records point at.
#[derive(Debug, Clone, PartialEq)]
pub struct ARecord {
    /// Relative to the zone: `www`, or `@` for the zone apex.
    pub name: String,
    pub targets: Vec<RecordTarget>,
}

/// Where an A record points.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordTarget {
    Server(String),
    FloatingIp(String),
    Address(IpAddr),
}

/// Size rotation of every log a stack writes (access logs, node logs, mariadbd's error
/// log): a log is rotated before it passes `max_bytes`, and `keep` files of it are kept,
/// the live one included. Defaults: 64 MiB × 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_bytes: 64 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// The application the app servers run.
#[derive(Debug, Clone, PartialEq)]
pub enum Codebase {
    /// An application compiled into webstack, by name (`foobar`).
    Builtin(String),
    /// A folder of the user's: its `public/` holds the static files, and `command` (run in
    /// the folder) is the application server process.
    Path {
        path: PathBuf,
        command: Option<Vec<String>>,
    },
}

/// One machine of the whiteboard and the components it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub address: IpAddr,
    pub load_balancer: Option<LoadBalancer>,
    pub web: Option<Web>,
    pub app: Option<App>,
    pub database: Option<Database>,
    pub firewall: Option<Firewall>,
    pub monitoring: Option<Monitoring>,
    pub collector: Option<Collector>,
}

/// The kinds of component a server can run, for messages and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    LoadBalancer,
    Web,
    App,
    Database,
    Firewall,
    Monitoring,
    Collector,
    /// A name server of the zone (`dns`, `dns2`, …), a process of its own.
    Dns,
}

impl ComponentKind {
    /// The key the component has in a design file.
    pub fn key(self) -> &'static str {
        match self {
            ComponentKind::LoadBalancer => "load_balancer",
            ComponentKind::Web => "web",
            ComponentKind::App => "app",
            ComponentKind::Database => "database",
            ComponentKind::Firewall => "firewall",
            ComponentKind::Monitoring => "monitoring",
            ComponentKind::Collector => "collector",
            ComponentKind::Dns => "dns",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub port: u16,
    pub mode: LbMode,
    pub algorithm: Algorithm,
    /// Servers whose web component receives the traffic, in the order given.
    pub backends: Vec<LbBackend>,
    /// Concurrent requests per backend; `None` is no limit.
    pub maxconn: Option<u32>,
    pub retries: u32,
    pub when_all_down: WhenAllDown,
    pub proxy_protocol: bool,
    pub stats_port: u16,
    pub health_check: HealthCheck,
    pub timeouts: LbTimeouts,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbBackend {
    pub server: String,
    pub weight: u32,
    pub backup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbMode {
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    ServiceUnavailable,
    FailOpen,
}

/// Active health checks, HAProxy's `check inter … rise … fall …`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    /// Consecutive passed checks that bring a down backend up.
    pub rise: u32,
    /// Consecutive failed checks that take an up backend down.
    pub fall: u32,
    /// HTTP path checked in http mode; tcp mode checks that a connection opens.
    pub path: String,
    pub expect_status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbTimeouts {
    pub connect: std::time::Duration,
    /// Until a backend's response head arrives.
    pub server: std::time::Duration,
    /// Until a client's request head arrives.
    pub client: std::time::Duration,
    /// How long a request may wait for a backend below its maxconn.
    pub queue: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    Weighted,
    LeastConn,
    SourceHash,
    First,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] =
        &["roundrobin", "weighted", "leastconn", "source", "first"];

    pub fn parse(name: &str) -> Option<Algorithm> {
        Some(match name {
            "roundrobin" => Algorithm::RoundRobin,
            "weighted" => Algorithm::Weighted,
            "leastconn" => Algorithm::LeastConn,
            "source" => Algorithm::SourceHash,
            "first" => Algorithm::First,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Web {
    pub port: u16,
    /// Static files; `None` means the codebase's `public/` folder.
    pub root: Option<PathBuf>,
    /// Servers whose app component gets the requests no static file answers.
    pub upstreams: Vec<String>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub port: u16,
    pub certificate: CertificateSource,
    /// HSTS max-age in seconds on HTTPS responses; `None` sends no HSTS.
    pub hsts_max_age: Option<u64>,
    /// The plain port answers 308 to the HTTPS port (ACME challenges and health checks
    /// excepted).
    pub redirect_http: bool,
}

/// Where a TLS endpoint's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CertificateSource {
    /// The stack's own certificate authority issues short-lived certificates.
    LocalCa,
    /// A PEM chain and key named in the design (paths resolved against its folder).
    Files { cert: PathBuf, key: PathBuf },
    /// An ACME server (Let's Encrypt, Pebble) with HTTP-01 on the stack's own HTTP port.
    Acme {
        directory: String,
        /// The ACME server's root CA, when it is not a public one (Pebble's).
        root_ca: Option<PathBuf>,
        email: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub port: u16,
    /// Reads go to a replica only while its lag is under this bound (else to the primary).
    pub max_replica_lag: std::time::Duration,
    /// The server whose database component holds the app's data (MySQL storage only).
    pub database: Option<String>,
    pub storage: Storage,
}

/// Where the application keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A MySQL-compatible database server of the design (the default).
    MySql,
    /// SQLite embedded in the app server: for designs with a single app server.
    Sqlite,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub port: u16,
    pub role: DatabaseRole,
    /// A primary's wait for a replica's acknowledgement before it goes on asynchronously.
    pub semi_sync_timeout: std::time::Duration,
    /// On a primary with replicas: fail over without an operator (`None`: manual).
    pub automatic_failover: Option<AutomaticFailover>,
}

/// Automatic failover of a primary: the replicas watch it, and promote the most advanced
/// of them once they and the app servers agree it has been unreachable for `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomaticFailover {
    pub after: std::time::Duration,
    /// No second automatic failover within this long of the last (anti-flapping).
    pub hold_off: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseRole {
    Primary,
    Replica { of: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Firewall {
    /// Rules the design adds to the derived policy, in the order written.
    pub allow: Vec<FirewallRule>,
    /// Rules that refuse before any allow is looked at.
    pub deny: Vec<FirewallRule>,
}

/// One allow or deny rule of a design's firewall block.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallRule {
    pub from: FirewallSource,
    /// `None`: every port of the server.
    pub port: Option<u16>,
    /// `None`: TCP and UDP.
    pub protocol: Option<Protocol>,
    /// Where the rule is written (`servers.server1.firewall.allow[0]`), for `firewall show`.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FirewallSource {
    Any,
    Server(String),
    /// An address range (a single address is a /32 or /128).
    Network {
        address: IpAddr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// The agent's own `/metrics`.
    pub port: u16,
    /// The server running the collector this agent reports to, if the design has one.
    pub collector: Option<String>,
    /// Records the agent holds while the collector cannot take them; beyond, it drops
    /// the newest and counts them.
    pub buffer: usize,
    /// How often the agent sends its metrics and what it buffered.
    pub interval: std::time::Duration,
    /// Access records of requests that did not fail (status under 400) sent per second at
    /// most; beyond, they are counted but not sent (failures always are). 0: every one.
    pub access_records: u32,
}

pub const DEFAULT_ACCESS_RECORDS: u32 = 1000;

pub const DEFAULT_AGENT_BUFFER: usize = 50_000;

/// The monitoring service: it holds what the agents send, within bounds, evaluates the
/// alert rules and serves the dashboard, a query API and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    pub port: u16,
    /// Metric samples older than this are dropped.
    pub window: std::time::Duration,
    pub max_logs: usize,
    pub max_traces: usize,
    pub notify: Option<Vec<String>>,
    /// The rules in effect: the defaults, changed or turned off by the design, and its own.
    pub alerts: Vec<webstack_alerts::RuleSpec>,
}

/// A virtual address that the active one of a group of load balancers holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatingIp {
    pub name: String,
    pub address: IpAddr,
    /// In priority order: the first is the preferred holder.
    pub servers: Vec<String>,
    /// Each member's priority, in the order of `servers`.
    pub priorities: Vec<u8>,
    pub interval: std::time::Duration,
    pub preempt: bool,
    pub preempt_delay: std::time::Duration,
    pub heartbeat_port: u16,
    pub track_weight: u8,
    pub notify: Option<Vec<String>>,
}

pub const DEFAULT_HEARTBEAT_PORT: u16 = 5112;

impl FloatingIp {
    pub fn priority_of(&self, server: &str) -> Option<u8> {
        let i = self.servers.iter().position(|s| s == server)?;
        self.priorities.get(i).copied()
    }
}

impl Design {
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Every member of `server`'s database cluster (see `database_cluster`), in name
    /// order; empty if it runs no database.
    pub fn database_members(&self, server: &str) -> Vec<String> {
        let Some((primary, replicas)) = self.database_cluster(server) else {
            return Vec::new();
        };
        let mut members: Vec<String> = std::iter::once(primary).chain(replicas).collect();
        members.sort();
        members
    }

    /// Where `me`'s mariadbd connects to replicate from `peer`: a port of `me`'s node on
    /// `me`'s address (database port + 10000 + the peer's place in the cluster), which
    /// relays to `peer`'s database from `me`'s address. MariaDB cannot bind its
    /// replication connection to an address, and the firewall tells servers apart by it.
    pub fn replication_relay(&self, me: &str, peer: &str) -> Option<SocketAddr> {
        let s = self.server(me)?;
        let port = s.database.as_ref()?.port;
        let index = self.database_members(me).iter().position(|n| n == peer)?;
        let relay = u32::from(port) + 10_000 + index as u32;
        Some(SocketAddr::new(s.address, u16::try_from(relay).ok()?))
    }

    pub fn floating_ip(&self, name: &str) -> Option<&FloatingIp> {
        self.floating_ips.iter().find(|f| f.name == name)
    }

    /// The floating IP `server` is a member of, if any.
    pub fn floating_ip_of(&self, server: &str) -> Option<&FloatingIp> {
        self.floating_ips
            .iter()
            .find(|f| f.servers.iter().any(|s| s == server))
    }

    /// The fully qualified name of a record of the zone (`www` → `www.foobar.com`).
    pub fn fqdn(&self, record: &str) -> String {
        if record == "@" {
            self.domain.clone()
        } else {
            format!("{record}.{}", self.domain)
        }
    }

    /// The addresses an A record answers with.
    pub fn record_addresses(&self, record: &ARecord) -> Vec<IpAddr> {
        record
            .targets
            .iter()
            .filter_map(|t| match t {
                RecordTarget::Server(name) => self.server(name).map(|s| s.address),
                RecordTarget::FloatingIp(name) => self.floating_ip(name).map(|f| f.address),
                RecordTarget::Address(ip) => Some(*ip),
            })
            .collect()
    }

    /// The name users type (`www.foobar.com`) and where HTTP for it is served: the first
    /// target of the `www` record (or of the first record), with the port of the component
    /// that answers there (a load balancer's, else a web server's).
    pub fn entry_point(&self) -> Option<(String, SocketAddr)> {
        let record = self
            .dns
            .records
            .iter()
            .find(|r| r.name == "www")
            .or_else(|| self.dns.records.first())?;
        let target = record.targets.first()?;
        let (address, server) = match target {
            RecordTarget::Server(name) => {
                let s = self.server(name)?;
                (s.address, s)
            }
            RecordTarget::FloatingIp(name) => {
                let f = self.floating_ip(name)?;
                (f.address, self.server(f.servers.first()?)?)
            }
            RecordTarget::Address(ip) => {
                let s = self.servers.iter().find(|s| s.address == *ip)?;
                (*ip, s)
            }
        };
        let port = server.http_port()?;
        Some((self.fqdn(&record.name), SocketAddr::new(address, port)))
    }

    /// Moves every address of the design into another /24 of the loopback range, keeping
    /// the host part: `127.10.0.11` with `127.55.3` becomes `127.55.3.11`. This is how
    /// several stacks (or tests) of one design run side by side on one machine.
    pub fn relocate(&mut self, prefix: [u8; 3]) {
        let move_ip = |ip: &mut IpAddr| {
            if let IpAddr::V4(v4) = ip {
                let o = v4.octets();
                *ip = IpAddr::from([prefix[0], prefix[1], prefix[2], o[3]]);
            }
        };
        move_ip(&mut self.dns.address);
        for ip in &mut self.dns.secondaries {
            move_ip(ip);
        }
        for server in &mut self.servers {
            move_ip(&mut server.address);
        }
        for fip in &mut self.floating_ips {
            move_ip(&mut fip.address);
        }
        for record in &mut self.dns.records {
            for target in &mut record.targets {
                if let RecordTarget::Address(ip) = target {
                    move_ip(ip);
                }
            }
        }
    }
}

impl Design {
    /// The database cluster a server's database belongs to: its primary (as designed)
    /// and the replicas of that primary, in design order.
    pub fn database_cluster(&self, server: &str) -> Option<(String, Vec<String>)> {
        let db = self.server(server)?.database.as_ref()?;
        let primary = match &db.role {
            DatabaseRole::Primary => server.to_string(),
            DatabaseRole::Replica { of } => of.clone(),
        };
        let replicas = self
            .servers
            .iter()
            .filter(|s| {
                s.database.as_ref().is_some_and(
                    |d| matches!(&d.role, DatabaseRole::Replica { of } if *of == primary),
                )
            })
            .map(|s| s.name.clone())
            .collect();
        Some((primary, replicas))
    }
}

impl Server {
    /// The components this server runs, in a fixed order.
    pub fn components(&self) -> Vec<ComponentKind> {
        let mut kinds = Vec::new();
        if self.load_balancer.is_some() {
            kinds.push(ComponentKind::LoadBalancer);
        }
        if self.web.is_some() {
            kinds.push(ComponentKind::Web);
        }
        if self.app.is_some() {
            kinds.push(ComponentKind::App);
        }
        if self.database.is_some() {
            kinds.push(ComponentKind::Database);
        }
        if self.firewall.is_some() {
            kinds.push(ComponentKind::Firewall);
        }
        if self.collector.is_some() {
            kinds.push(ComponentKind::Collector);
        }
        if self.monitoring.is_some() {
            kinds.push(ComponentKind::Monitoring);
        }
        kinds
    }

    /// The port a user's HTTP request arrives at on this server, if it takes any.
    pub fn http_port(&self) -> Option<u16> {
        self.load_balancer
            .as_ref()
            .map(|lb| lb.port)
            .or_else(|| self.web.as_ref().map(|w| w.port))
    }
}
