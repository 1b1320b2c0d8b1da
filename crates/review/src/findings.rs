//! The design review: every finding with its severity, the servers and components involved,
//! why it matters and how to fix it. Pure functions of the design.

use serde::Serialize;
use webstack_topology::{ComponentKind, Design, RecordTarget};

use crate::capacity::{bottleneck, Mix};
use crate::paths::serves;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// What kind of problem a finding is; stable names for tools and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    SinglePointOfFailure,
    NoHttps,
    TlsEndsEarly,
    NoFirewall,
    ExposedDatabase,
    ExposedAppServer,
    NoMonitoring,
    NoCollector,
    MonitoringSinglePoint,
    OneNameServer,
    DeployDowntime,
    NoReplica,
    ManualFailover,
    SlowHealthChecks,
    ColocatedTiers,
    Capacity,
}

impl Kind {
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub title: String,
    pub servers: Vec<String>,
    pub components: Vec<String>,
    /// Why it matters, for a learner.
    pub why: String,
    /// The setting or design step that solves it.
    pub fix: String,
}

/// Reviews a design. Findings come most severe first.
pub fn review(design: &Design, mix: &Mix) -> Vec<Finding> {
    let mut out = Vec::new();
    spofs(design, &mut out);
    security(design, &mut out);
    operations(design, &mut out);
    out.push(bottleneck(design, mix));
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Removes each server in turn; for a server the site cannot lose, says which of its
/// components is the one of its kind.
fn spofs(design: &Design, out: &mut Vec<Finding>) {
    for s in &design.servers {
        let Err(broken) = serves(design, &|server, _| server == s.name) else {
            continue;
        };
        let critical: Vec<String> = s
            .components()
            .into_iter()
            .filter(|k| serves(design, &|server, kind| server == s.name && kind == *k).is_err())
            .map(|k| k.to_string())
            .collect();
        let what = if critical.is_empty() {
            "the server as a whole".to_string()
        } else {
            critical.join(", ")
        };
        let fix = match critical.first().map(String::as_str) {
            Some("load_balancer") => "add a second load balancer and share a floating IP between them (active-passive, as in the scaled design), or give www two A records (active-active)".to_string(),
            Some("web") | Some("app") => "run this tier on two or more servers behind the load balancer (add backends or upstreams)".to_string(),
            Some("database") => "add a replica (role = \"replica\", replica_of) so the data survives and a promotion can restore writes".to_string(),
            _ => "put a second server beside it behind a load balancer".to_string(),
        };
        out.push(Finding {
            kind: Kind::SinglePointOfFailure,
            severity: Severity::Critical,
            title: format!("{} is a single point of failure", s.name),
            servers: vec![s.name.clone()],
            components: critical,
            why: format!("If {} fails, {} ({what} has no second copy), and the whole site is down until it is back.", s.name, broken.explain()),
            fix,
        });
    }
}

fn security(design: &Design, out: &mut Vec<Finding>) {
    let tls_on: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| {
            s.load_balancer.as_ref().is_some_and(|l| l.tls.is_some())
                || s.web.as_ref().is_some_and(|w| w.tls.is_some())
        })
        .map(|s| s.name.as_str())
        .collect();
    let entry: Vec<String> = entry_servers(design);
    if tls_on.is_empty() {
        out.push(Finding {
            kind: Kind::NoHttps,
            severity: Severity::High,
            title: "the site has no HTTPS".into(),
            servers: entry.clone(),
            components: vec![],
            why: "Every request, password and cookie crosses the network in clear text: anyone on the path can read or change it, and browsers mark the site \"not secure\".".into(),
            fix: "terminate TLS where users connect: tls = { port = 443 } on the load balancer (or the web server when there is none), with HTTP redirected to HTTPS".into(),
        });
    } else {
        for lb in design
            .servers
            .iter()
            .filter(|s| s.load_balancer.as_ref().is_some_and(|l| l.tls.is_some()))
        {
            let clear: Vec<&str> = lb
                .load_balancer
                .as_ref()
                .unwrap()
                .backends
                .iter()
                .filter(|b| {
                    b.server != lb.name
                        && design
                            .server(&b.server)
                            .is_some_and(|w| w.web.as_ref().is_some_and(|web| web.tls.is_none()))
                })
                .map(|b| b.server.as_str())
                .collect();
            if !clear.is_empty() {
                out.push(Finding {
                    kind: Kind::TlsEndsEarly,
                    severity: Severity::Medium,
                    title: format!("TLS ends at {} and traffic then crosses servers in clear", lb.name),
                    servers: std::iter::once(lb.name.clone()).chain(names(&clear)).collect(),
                    components: vec!["load_balancer".into(), "web".into()],
                    why: format!("Requests are decrypted on {} and sent on to {} unencrypted: anyone inside the network can read them.", lb.name, clear.join(", ")),
                    fix: "re-encrypt to the backends (tls on their web servers), or keep the network between them private and firewalled".into(),
                });
            }
        }
    }
    let unprotected: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| s.firewall.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if !unprotected.is_empty() {
        out.push(Finding {
            kind: Kind::NoFirewall,
            severity: Severity::High,
            title: format!("{} of {} servers have no firewall", unprotected.len(), design.servers.len()),
            servers: names(&unprotected),
            components: vec!["firewall".into()],
            why: "Every port a server listens on is open to anyone who can reach it, including ports meant only for the tier in front of it.".into(),
            fix: "add [servers.NAME.firewall] to each server: webstack derives least-privilege rules (only the load balancer is reachable from outside; each tier only from the one in front)".into(),
        });
    }
    for s in &design.servers {
        if s.firewall.is_some() {
            continue;
        }
        if let Some(db) = &s.database {
            out.push(Finding {
                kind: Kind::ExposedDatabase,
                severity: Severity::High,
                title: format!("the database on {} is reachable from outside", s.name),
                servers: vec![s.name.clone()],
                components: vec!["database".into()],
                why: format!("Nothing stops a client from connecting to {}:{} directly: one leaked password, or one unpatched bug, is a data breach.", s.address, db.port),
                fix: format!("add [servers.{}.firewall]: the database then only accepts the app servers", s.name),
            });
        }
        if s.app.is_some() {
            out.push(Finding {
                kind: Kind::ExposedAppServer,
                severity: Severity::Medium,
                title: format!("the app server on {} is reachable from outside", s.name),
                servers: vec![s.name.clone()],
                components: vec!["app".into()],
                why: "Clients can skip the web server and load balancer (their limits, logging and TLS) and talk to the application directly.".into(),
                fix: format!("add [servers.{}.firewall]: the app server then only accepts its web servers", s.name),
            });
        }
    }
}

fn operations(design: &Design, out: &mut Vec<Finding>) {
    if design.dns.secondaries.is_empty() {
        out.push(Finding {
        kind: Kind::OneNameServer,
        severity: Severity::Medium,
        title: format!("the zone {} has one name server", design.domain),
        servers: vec![webstack_topology::DNS_PROCESS_NAME.into()],
        components: vec!["dns".into()],
        why: format!("RFC 2182 asks for at least two name servers per zone, apart from each other: if {} ({}) fails, resolvers cannot find {} once their cached answers expire, although every server is still up.", webstack_topology::DNS_PROCESS_NAME, design.dns.address, design.fqdn("www")),
        fix: "serve the zone from a second name server as well: secondaries = [\"127.X.Y.Z\"] in [dns] (it takes the zone by zone transfer, AXFR, and is told of changes by NOTIFY; NS lists both); a registrar's DNS usually gives several".into(),
        });
    }
    let unmonitored: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| s.monitoring.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if !unmonitored.is_empty() {
        out.push(Finding {
            kind: Kind::NoMonitoring,
            severity: Severity::Medium,
            title: format!("{} of {} servers have no monitoring agent", unmonitored.len(), design.servers.len()),
            servers: names(&unmonitored),
            components: vec!["monitoring".into()],
            why: "Nobody learns that a server is failing, slow or full until users complain; there are no metrics or logs to find out why.".into(),
            fix: "add [servers.NAME.monitoring] to each server (host and HTTP metrics, logs, error traces)".into(),
        });
    }
    let collectors: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| s.collector.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let agents = design
        .servers
        .iter()
        .filter(|s| s.monitoring.is_some())
        .count();
    if agents > 0 && collectors.is_empty() {
        out.push(Finding {
            kind: Kind::NoCollector,
            severity: Severity::Medium,
            title: "the monitoring agents have no collector to report to".into(),
            servers: Vec::new(),
            components: vec!["monitoring".into()],
            why: "Each agent serves its own /metrics, but nothing gathers them: no alert fires, no dashboard shows the stack, and logs and error traces stay on each server.".into(),
            fix: "add a server with [servers.NAME.collector] (the agents report to the design's one collector), or scrape every agent with a Prometheus of your own".into(),
        });
    }
    if let [only] = collectors[..] {
        out.push(Finding {
            kind: Kind::MonitoringSinglePoint,
            severity: Severity::Low,
            title: format!("{only} is the only collector: monitoring has a single point of failure"),
            servers: names(&[only]),
            components: vec!["collector".into()],
            why: format!("If {only} fails the site keeps serving, but no alert fires and the dashboard is gone until it is back; the agents buffer their records meanwhile and drop (and count) what their buffers cannot hold."),
            fix: "have a second monitoring system watch this one (an external Prometheus scraping the collector's /metrics, with its own alert on it), as Prometheus users run two replicas behind Alertmanager".into(),
        });
    }
    let apps: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| s.app.is_some())
        .map(|s| s.name.as_str())
        .collect();
    if apps.len() == 1 {
        out.push(Finding {
            kind: Kind::DeployDowntime,
            severity: Severity::Medium,
            title: "deploying new code takes the site down".into(),
            servers: names(&apps),
            components: vec!["app".into()],
            why: format!("With one app server ({}), no other server can take its traffic: an application command must stop to run the new code, and the site is down meanwhile (`webstack deploy` measures it), as it is during any maintenance of the server. The built-in app hands its socket to the new release without a gap, but a release that misbehaves then serves every user until it is rolled back.", apps[0]),
            fix: "run two or more app servers: `webstack deploy` then takes each out of service in turn (a rolling deploy) and stops at the first that fails its health check".into(),
        });
    }
    for s in &design.servers {
        if let Some(db) = &s.database {
            let replicated = design.servers.iter().any(|r| r.database.as_ref().is_some_and(|d| matches!(&d.role, webstack_topology::DatabaseRole::Replica { of } if *of == s.name)));
            if db.role == webstack_topology::DatabaseRole::Primary
                && replicated
                && db.automatic_failover.is_none()
            {
                out.push(Finding {
                    kind: Kind::ManualFailover,
                    severity: Severity::Medium,
                    title: format!("only {} accepts writes, and failing over is manual", s.name),
                    servers: vec![s.name.clone()],
                    components: vec!["database".into()],
                    why: format!("The data survives {} failing, but writes stop until someone promotes a replica; reads of the app go on.", s.name),
                    fix: format!("promote a replica when {} fails (`webstack db promote SERVER`), or let the replicas do it: automatic_failover = {{ after = \"1s\" }} on {}'s database", s.name, s.name),
                });
            }
            if db.role == webstack_topology::DatabaseRole::Primary && !replicated {
                out.push(Finding {
                    kind: Kind::NoReplica,
                    severity: Severity::High,
                    title: format!("the database on {} has no replica", s.name),
                    servers: vec![s.name.clone()],
                    components: vec!["database".into()],
                    why: "All the data lives on one disk of one server: if it fails, the data since the last backup is gone, and reads cannot be spread.".into(),
                    fix: format!("add a server with database = {{ role = \"replica\", replica_of = \"{}\" }}", s.name),
                });
            }
        }
        if let Some(lb) = &s.load_balancer {
            let detect = lb.health_check.interval * lb.health_check.fall + lb.health_check.timeout;
            if detect.as_secs() >= 30 {
                out.push(Finding {
                    kind: Kind::SlowHealthChecks,
                    severity: Severity::Low,
                    title: format!("{} takes {:?} to notice a dead backend", s.name, detect),
                    servers: vec![s.name.clone()],
                    components: vec!["load_balancer".into()],
                    why: "Until the health checks fail often enough, the load balancer keeps choosing a dead backend; only retries hide it.".into(),
                    fix: "shorten health_check.interval_ms or lower fall (HAProxy's default is 2 s × 3)".into(),
                });
            }
        }
        let tiers = [s.web.is_some(), s.app.is_some(), s.database.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if tiers > 1 {
            let kinds: Vec<String> = s
                .components()
                .into_iter()
                .filter(|k| {
                    matches!(
                        k,
                        ComponentKind::Web | ComponentKind::App | ComponentKind::Database
                    )
                })
                .map(|k| k.to_string())
                .collect();
            out.push(Finding {
                kind: Kind::ColocatedTiers,
                severity: Severity::Low,
                title: format!("{} runs several tiers ({})", s.name, kinds.join(", ")),
                servers: vec![s.name.clone()],
                components: kinds,
                why: "The tiers compete for the same CPU, memory and disk, fail together, and can only be scaled together.".into(),
                fix: "give each tier servers of its own (as in the scaled design)".into(),
            });
        }
    }
}

/// The servers users connect to first.
fn entry_servers(design: &Design) -> Vec<String> {
    let mut out = Vec::new();
    for r in &design.dns.records {
        for t in &r.targets {
            match t {
                RecordTarget::Server(s) => out.push(s.clone()),
                RecordTarget::FloatingIp(f) => out.extend(
                    design
                        .floating_ip(f)
                        .map(|f| f.servers.clone())
                        .unwrap_or_default(),
                ),
                RecordTarget::Address(_) => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
