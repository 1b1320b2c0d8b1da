//! The least-privilege policy of a server, derived from the design: from outside, only
//! what the zone's records point at; web servers only from the load balancers in front of
//! them; app servers only from their web servers; databases only from the app servers of
//! their cluster and from each other (replication, in either direction after a
//! promotion); the operator's console (webstack's own probes and commands) everywhere.
//! The design's deny rules come first, then its allow rules, then the derived ones.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use webstack_topology::{Design, FirewallRule, FirewallSource, Protocol, RecordTarget, Server};

use crate::policy::{Action, Policy, Rule, Sources};

/// The address webstack's own health probes and commands (`status`, `lb`, `bench`'s
/// readiness checks) connect from: host .254 of the name server's /24. It stands for the
/// operator's console of a real site (a bastion or management network), so that a user's
/// curl from 127.0.0.1 meets the firewall like any other stranger.
pub fn operator_address(design: &Design) -> IpAddr {
    match design.dns.address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 254))
        }
        v6 => v6,
    }
}

/// The policy of `server`, or `None` when the design gives it no firewall.
pub fn derive(design: &Design, server: &str) -> Option<Policy> {
    let s = design.server(server)?;
    let firewall = s.firewall.as_ref()?;
    let mut rules = Vec::new();
    for r in &firewall.deny {
        rules.push(design_rule(design, r, Action::Deny));
    }
    for r in &firewall.allow {
        rules.push(design_rule(design, r, Action::Allow));
    }
    let ports = ports(design, s);
    let operator = operator_address(design);
    rules.push(Rule {
        action: Action::Allow,
        sources: single(operator),
        port: None,
        protocol: Some(Protocol::Tcp),
        because: format!("the operator's console {operator}: webstack status, probes and commands"),
    });

    let entry = entry_records(design, s);
    let from_servers = |names: &BTreeSet<String>| -> Sources {
        Sources::Networks(
            names
                .iter()
                .filter_map(|n| design.server(n))
                .map(|s| host(s.address))
                .collect(),
        )
    };
    let mut allow = |sources: Sources, port: u16, because: String| {
        if sources != Sources::Networks(Vec::new()) {
            rules.push(Rule {
                action: Action::Allow,
                sources,
                port: Some(port),
                protocol: Some(Protocol::Tcp),
                because,
            });
        }
    };

    if let Some(lb) = &s.load_balancer {
        let site_ports = std::iter::once(lb.port).chain(lb.tls.as_ref().map(|t| t.port));
        for port in site_ports {
            if let Some(record) = &entry {
                allow(Sources::Any, port, format!("{record}: the site's entry"));
            }
        }
    }
    if let Some(web) = &s.web {
        let lbs: BTreeSet<String> = design
            .servers
            .iter()
            .filter(|o| {
                o.load_balancer
                    .as_ref()
                    .is_some_and(|lb| lb.backends.iter().any(|b| b.server == s.name))
            })
            .map(|o| o.name.clone())
            .collect();
        for port in std::iter::once(web.port).chain(web.tls.as_ref().map(|t| t.port)) {
            match &entry {
                Some(record) => allow(Sources::Any, port, format!("{record}: the site's entry")),
                None => allow(
                    from_servers(&lbs),
                    port,
                    format!(
                        "{} balance{} over {} (servers.NAME.load_balancer.backends)",
                        join(&lbs),
                        if lbs.len() == 1 { "s" } else { "" },
                        s.name
                    ),
                ),
            }
        }
    }
    if let Some(app) = &s.app {
        let webs: BTreeSet<String> = design
            .servers
            .iter()
            .filter(|o| {
                o.web
                    .as_ref()
                    .is_some_and(|w| w.upstreams.contains(&s.name))
            })
            .map(|o| o.name.clone())
            .collect();
        allow(
            from_servers(&webs),
            app.port,
            format!(
                "the web server{} of {} {} to it (servers.NAME.web.upstreams)",
                if webs.len() == 1 { "" } else { "s" },
                join(&webs),
                if webs.len() == 1 { "proxies" } else { "proxy" }
            ),
        );
    }
    if let (Some(app), Some(db)) = (&s.app, s.app.as_ref().and_then(|a| a.database.as_deref())) {
        // Automatic failover: the replicas ask each app server whether it still reaches
        // the primary before they promote one of them.
        let (primary, replicas) = design.database_cluster(db).unwrap_or_default();
        let automatic = design
            .server(&primary)
            .and_then(|p| p.database.as_ref())
            .is_some_and(|d| d.automatic_failover.is_some());
        if automatic && !replicas.is_empty() {
            let all: BTreeSet<String> = std::iter::once(primary).chain(replicas).collect();
            allow(
                from_servers(&all),
                app.port,
                format!(
                    "the database servers {} ask whether it reaches their primary before an automatic failover (servers.NAME.database.automatic_failover)",
                    join(&all)
                ),
            );
        }
    }
    if let Some(c) = &s.collector {
        let agents: BTreeSet<String> = design
            .servers
            .iter()
            .filter(|o| {
                o.monitoring
                    .as_ref()
                    .is_some_and(|m| m.collector.as_deref() == Some(s.name.as_str()))
            })
            .map(|o| o.name.clone())
            .collect();
        allow(
            from_servers(&agents),
            c.port,
            format!(
                "the monitoring agent{} of {} report{} here (servers.NAME.monitoring.collector)",
                if agents.len() == 1 { "" } else { "s" },
                join(&agents),
                if agents.len() == 1 { "s" } else { "" },
            ),
        );
        if let Some(m) = &design.dns.monitoring {
            if m.collector.as_deref() == Some(s.name.as_str()) {
                let name_servers = design.dns.name_servers();
                allow(
                    Sources::Networks(
                        name_servers.iter().map(|(_, ip)| host(*ip)).collect(),
                    ),
                    c.port,
                    format!(
                        "the monitoring agent{} of the name server{} {} report{} here (dns.monitoring.collector)",
                        if name_servers.len() == 1 { "" } else { "s" },
                        if name_servers.len() == 1 { "" } else { "s" },
                        name_servers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
                        if name_servers.len() == 1 { "s" } else { "" },
                    ),
                );
            }
        }
        allow(
            single(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            c.port,
            "the dashboard and query API, for a browser on this host (127.0.0.1); add allow rules for other networks".into(),
        );
    }
    if let Some(db) = &s.database {
        let cluster: BTreeSet<String> = design.database_members(&s.name).into_iter().collect();
        let apps: BTreeSet<String> = design
            .servers
            .iter()
            .filter(|o| {
                o.app
                    .as_ref()
                    .is_some_and(|a| a.database.as_ref().is_some_and(|d| cluster.contains(d)))
            })
            .map(|o| o.name.clone())
            .collect();
        allow(
            from_servers(&apps),
            db.port,
            format!(
                "the app server{} of {} use{} this database cluster (servers.NAME.app.database)",
                if apps.len() == 1 { "" } else { "s" },
                join(&apps),
                if apps.len() == 1 { "s" } else { "" },
            ),
        );
        let peers: BTreeSet<String> = cluster.iter().filter(|n| **n != s.name).cloned().collect();
        allow(
            from_servers(&peers),
            db.port,
            format!(
                "replication with {} (servers.NAME.database.replica_of)",
                join(&peers)
            ),
        );
        for peer in &peers {
            if let Some(relay) = design.replication_relay(&s.name, peer) {
                allow(
                    single(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    relay.port(),
                    format!("mariadbd's replication connection to {peer}, relayed from this server's address (MariaDB cannot bind one; the kernel gives it 127.0.0.1)"),
                );
            }
        }
    }
    if let Some(f) = design.floating_ip_of(&s.name) {
        let peers: BTreeSet<String> = f
            .servers
            .iter()
            .filter(|n| **n != s.name)
            .cloned()
            .collect();
        let sources = from_servers(&peers);
        if sources != Sources::Networks(Vec::new()) {
            rules.push(Rule {
                action: Action::Allow,
                sources,
                port: Some(f.heartbeat_port),
                protocol: Some(Protocol::Udp),
                because: format!(
                    "heartbeats of floating IP {} from {} (floating_ips.{}.servers)",
                    f.name,
                    join(&peers),
                    f.name
                ),
            });
        }
    }
    Some(Policy {
        server: s.name.clone(),
        address: s.address,
        ports,
        rules,
    })
}

/// Every port the server's processes listen on, as the node binds them.
fn ports(design: &Design, s: &Server) -> Vec<(u16, Protocol, String)> {
    let mut ports = Vec::new();
    let mut add = |port: u16, what: &str| ports.push((port, Protocol::Tcp, what.to_string()));
    if let Some(lb) = &s.load_balancer {
        add(lb.port, "load balancer");
        if let Some(t) = &lb.tls {
            add(t.port, "load balancer HTTPS");
        }
        add(lb.stats_port, "load balancer stats");
    }
    if let Some(w) = &s.web {
        add(w.port, "web server");
        if let Some(t) = &w.tls {
            add(t.port, "web server HTTPS");
        }
    }
    if let Some(a) = &s.app {
        add(a.port, "app server");
    }
    if let Some(m) = &s.monitoring {
        add(m.port, "monitoring agent");
    }
    if let Some(c) = &s.collector {
        add(c.port, "monitoring collector");
    }
    if let Some(d) = &s.database {
        add(d.port, "database");
        for peer in design.database_members(&s.name) {
            if let Some(relay) = design
                .replication_relay(&s.name, &peer)
                .filter(|_| peer != s.name)
            {
                ports.push((
                    relay.port(),
                    Protocol::Tcp,
                    format!("replication relay to {peer}"),
                ));
            }
        }
    }
    if let Some(f) = design.floating_ip_of(&s.name) {
        ports.push((
            f.heartbeat_port,
            Protocol::Udp,
            format!("heartbeats of floating IP {}", f.name),
        ));
    }
    ports
}

/// The zone's record that sends outside traffic to this server, directly, through a
/// floating IP it may hold, or by address (`www → lb1 in dns.records`).
fn entry_records(design: &Design, s: &Server) -> Option<String> {
    design.dns.records.iter().find_map(|r| {
        let hit = r.targets.iter().any(|t| match t {
            RecordTarget::Server(n) => *n == s.name,
            RecordTarget::FloatingIp(f) => design
                .floating_ip(f)
                .is_some_and(|f| f.servers.contains(&s.name)),
            RecordTarget::Address(ip) => *ip == s.address,
        });
        hit.then(|| format!("{} → {} in dns.records", design.fqdn(&r.name), s.name))
    })
}

fn design_rule(design: &Design, r: &FirewallRule, action: Action) -> Rule {
    let sources = match &r.from {
        FirewallSource::Any => Sources::Any,
        FirewallSource::Server(name) => design
            .server(name)
            .map(|s| single(s.address))
            .unwrap_or(Sources::Networks(Vec::new())),
        FirewallSource::Network { address, prefix } => Sources::Networks(vec![(*address, *prefix)]),
    };
    Rule {
        action,
        sources,
        port: r.port,
        protocol: r.protocol,
        because: r.key.clone(),
    }
}

fn host(ip: IpAddr) -> (IpAddr, u8) {
    (ip, if ip.is_ipv4() { 32 } else { 128 })
}

fn single(ip: IpAddr) -> Sources {
    Sources::Networks(vec![host(ip)])
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured() -> Design {
        webstack_topology::load("secured").unwrap().design
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_tier_only_from_the_tier_in_front() {
        let d = secured();
        let outside = ip("127.10.2.200");
        let (lb1, s1, s2) = (ip("127.10.2.10"), ip("127.10.2.11"), ip("127.10.2.12"));
        let lb = derive(&d, "lb1").unwrap();
        let p1 = derive(&d, "server1").unwrap();
        let p2 = derive(&d, "server2").unwrap();
        let ok = |p: &Policy, src, port| p.decide(src, port, Protocol::Tcp).allowed;
        // Outside: only the load balancer's HTTP and HTTPS.
        assert!(ok(&lb, outside, 8080) && ok(&lb, outside, 8443));
        assert!(!ok(&lb, outside, 8404), "stats are for the operator");
        for port in [8080, 8000, 3306, 13306] {
            assert!(!ok(&p1, outside, port), "outside to server1:{port}");
        }
        // Web from the load balancer; app from its web server (itself); database from
        // the app servers of the cluster and the replica.
        assert!(ok(&p1, lb1, 8080) && !ok(&p1, s2, 8080));
        assert!(ok(&p1, s1, 8000) && !ok(&p1, lb1, 8000) && !ok(&p1, s2, 8000));
        assert!(ok(&p1, s1, 3306) && ok(&p1, s2, 3306) && !ok(&p1, lb1, 3306));
        assert!(
            ok(&p2, s1, 3306) && ok(&p2, s2, 3306),
            "reads and replication reach the replica"
        );
        // server2's relay to server1 is 3306 + 10000 + 0 (server1 sorts first); there is
        // none to itself.
        assert!(ok(&p2, ip("127.0.0.1"), 13306) && !ok(&p2, s1, 13306));
        assert!(!ok(&p2, ip("127.0.0.1"), 13307));
        // The operator everywhere.
        let operator = operator_address(&d);
        assert_eq!(operator, ip("127.10.2.254"));
        for port in [8080, 8000, 3306] {
            assert!(ok(&p1, operator, port));
        }
        assert!(ok(&lb, operator, 8404));
        // Every rule says where it comes from.
        assert!(lb
            .rules
            .iter()
            .any(|r| r.because.contains("www.foobar.com → lb1 in dns.records")));
    }

    #[test]
    fn design_rules_come_first() {
        let src = webstack_topology::shipped_source("secured").unwrap().replace(
            "[servers.server1.firewall]",
            "[servers.server1.firewall]\nallow = [{ from = \"127.20.0.0/16\", port = 8000 }]\ndeny = [{ from = \"lb1\" }]",
        );
        let d = webstack_topology::parse_design(&src, "secured.toml", std::path::Path::new("."))
            .unwrap();
        let p = derive(&d, "server1").unwrap();
        assert!(p.decide(ip("127.20.9.9"), 8000, Protocol::Tcp).allowed);
        assert!(!p.decide(ip("127.20.9.9"), 8080, Protocol::Tcp).allowed);
        let lb = p.decide(ip("127.10.2.10"), 8080, Protocol::Tcp);
        assert_eq!(
            lb,
            crate::Decision {
                allowed: false,
                rule: Some(0)
            },
            "the deny beats the derived allow"
        );
    }

    #[test]
    fn no_firewall_block_no_policy() {
        let d = webstack_topology::load("distributed").unwrap().design;
        assert_eq!(derive(&d, "server1"), None);
    }
}
