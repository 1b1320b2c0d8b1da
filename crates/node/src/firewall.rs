//! The server's firewall at runtime: every listener the node binds (web, app, load
//! balancer, stats, HTTPS, the database's front, the replication relays) gets the policy
//! derived from the design as its peer check. A refused peer's connection is closed at
//! accept, before a byte of it is read; each decision is counted per rule, and refusals
//! are logged at most once a second per rule, with how many were not logged.
//!
//! One node process runs one server, so the firewall is the process's: it is set up at
//! start (`install`), every bind goes through `bind`, and a reload (`replace`) swaps the
//! policy under every listener at once: each accept reads the policy in force.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use webstack_firewall::{Counters, Policy, Protocol};
use webstack_topology::Design;

use crate::status::StatusFile;

static FIREWALL: RwLock<Option<Arc<ServerFirewall>>> = RwLock::new(None);

pub struct ServerFirewall {
    pub policy: Policy,
    pub counters: Counters,
    /// Per rule (`None`: the default deny): when a refusal was last logged, and how many
    /// since.
    logged: Mutex<HashMap<Option<usize>, (Instant, u64)>>,
}

/// Sets up the firewall of `server` (none if its design block is absent) and keeps its
/// counters in the node's status every second.
pub fn install(design: &Design, server: &str, status: &Arc<StatusFile>) {
    let firewall = derive(design, server);
    if let Some(fw) = &firewall {
        eprintln!(
            "firewall: {} rules from the design; everything else is refused",
            fw.policy.rules.len()
        );
    }
    *FIREWALL.write().expect("firewall lock") = firewall;
    let status = status.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = current().map(|fw| fw.counters.snapshot());
            if now != last {
                status.update(|s| s.firewall = now.clone());
                last = now;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn derive(design: &Design, server: &str) -> Option<Arc<ServerFirewall>> {
    webstack_firewall::derive(design, server).map(|policy| {
        Arc::new(ServerFirewall {
            counters: Counters::new(&policy),
            policy,
            logged: Mutex::new(HashMap::new()),
        })
    })
}

/// Puts the policy a reloaded design derives for `server` in force, if it differs from
/// the one in force; says what changed. Its counters start from zero.
pub fn replace(design: &Design, server: &str) -> Option<String> {
    let next = derive(design, server);
    let mut slot = FIREWALL.write().expect("firewall lock");
    let rules = |fw: &Option<Arc<ServerFirewall>>| fw.as_ref().map(|f| f.policy.rules.clone());
    let said = crate::reload::describe_rules(rules(&slot).as_deref(), rules(&next).as_deref())?;
    *slot = next;
    Some(said)
}

/// The server's firewall in force (`None`: it has none).
pub fn current() -> Option<Arc<ServerFirewall>> {
    FIREWALL.read().expect("firewall lock").clone()
}

/// Binds a TCP listener of this server, behind its firewall: every connection is decided
/// by the policy in force when it is accepted (none: all are admitted).
pub fn bind(addr: SocketAddr) -> Result<webstack_net::Listener, webstack_net::NetError> {
    let listener = webstack_net::Listener::bind(addr)?;
    let port = addr.port();
    Ok(listener.with_peer_check(Arc::new(move |peer: IpAddr| {
        current().is_none_or(|fw| fw.admit(peer, port, Protocol::Tcp))
    })))
}

/// Whether a datagram from `peer` to this server's UDP `port` may be read (the floating
/// IP's heartbeats; DNS runs in a process of its own).
pub fn admit_udp(peer: IpAddr, port: u16) -> bool {
    current().is_none_or(|fw| fw.admit(peer, port, Protocol::Udp))
}

impl ServerFirewall {
    fn admit(&self, peer: IpAddr, port: u16, protocol: Protocol) -> bool {
        let decision = self.policy.decide(peer, port, protocol);
        self.counters.count(decision);
        if !decision.allowed {
            self.log_refusal(peer, port, protocol, decision.rule);
        }
        decision.allowed
    }

    fn log_refusal(&self, peer: IpAddr, port: u16, protocol: Protocol, rule: Option<usize>) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let entry = logged
            .entry(rule)
            .or_insert((Instant::now() - Duration::from_secs(2), 0));
        if entry.0.elapsed() < Duration::from_secs(1) {
            entry.1 += 1;
            return;
        }
        let why = match rule {
            Some(i) => format!("rule {} ({})", i + 1, self.policy.rules[i].because),
            None => "no rule allows it".into(),
        };
        let more = if entry.1 > 0 {
            format!("; {} more refused since the last line", entry.1)
        } else {
            String::new()
        };
        let protocol = match protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        eprintln!(
            "firewall: refused {peer} → {}:{port}/{protocol}: {why}{more}",
            self.policy.address
        );
        *entry = (Instant::now(), 0);
    }
}
