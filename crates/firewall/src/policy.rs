//! Rules, the first-match decision and the counters behind `firewall show`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use webstack_topology::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// Who a rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    Any,
    /// Address ranges (a server is its address as a /32).
    Networks(Vec<(IpAddr, u8)>),
}

impl Sources {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Sources::Any => true,
            Sources::Networks(nets) => nets
                .iter()
                .any(|(net, prefix)| in_network(ip, *net, *prefix)),
        }
    }
}

/// Whether `ip` lies in `net/prefix` (never across IPv4 and IPv6).
pub fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// One rule: what it does, to whom, on which port and protocol, and the design fact it
/// comes from (shown by `firewall show` and in the refusal log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub sources: Sources,
    /// `None`: every port.
    pub port: Option<u16>,
    /// `None`: TCP and UDP.
    pub protocol: Option<Protocol>,
    pub because: String,
}

impl Rule {
    fn matches(&self, src: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.port.is_none_or(|p| p == port)
            && self.protocol.is_none_or(|p| p == protocol)
            && self.sources.contains(src)
    }
}

/// A server's rules in the order they are tried; what matches none is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub server: String,
    pub address: IpAddr,
    /// Every port the server listens on, for the record and the nftables export.
    pub ports: Vec<(u16, Protocol, String)>,
    pub rules: Vec<Rule>,
}

/// The outcome for one connection: the index of the rule that decided, or `None` for the
/// default (deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Option<usize>,
}

impl Policy {
    /// First match wins; nothing matched is refused.
    pub fn decide(&self, src: IpAddr, port: u16, protocol: Protocol) -> Decision {
        match self
            .rules
            .iter()
            .position(|r| r.matches(src, port, protocol))
        {
            Some(i) => Decision {
                allowed: self.rules[i].action == Action::Allow,
                rule: Some(i),
            },
            None => Decision {
                allowed: false,
                rule: None,
            },
        }
    }

    /// The rules as `firewall show` prints them, with each one's counter.
    pub fn show(&self, counters: Option<&[u64]>) -> String {
        let mut out = format!(
            "firewall of {} ({}): first match wins, anything else is refused\n",
            self.server, self.address
        );
        for (i, r) in self.rules.iter().enumerate() {
            let count = counters
                .and_then(|c| c.get(i))
                .map(|n| format!("  [{n} connections]"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:>2}. {:<5} from {:<28} to {:<11} {}{count}\n",
                i + 1,
                match r.action {
                    Action::Allow => "allow",
                    Action::Deny => "deny",
                },
                describe_sources(&r.sources),
                describe_port(r.port, r.protocol),
                r.because
            ));
        }
        let refused = counters
            .and_then(|c| c.get(self.rules.len()))
            .map(|n| format!("  [{n} connections]"))
            .unwrap_or_default();
        out.push_str(&format!("   *. deny  everything else{refused}\n"));
        out
    }
}

pub(crate) fn describe_sources(s: &Sources) -> String {
    match s {
        Sources::Any => "anywhere".into(),
        Sources::Networks(nets) => nets
            .iter()
            .map(|(ip, p)| match (ip, p) {
                (IpAddr::V4(_), 32) | (IpAddr::V6(_), 128) => ip.to_string(),
                _ => format!("{ip}/{p}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn describe_port(port: Option<u16>, protocol: Option<Protocol>) -> String {
    let proto = match protocol {
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        None => "tcp+udp",
    };
    match port {
        Some(p) => format!("{proto}/{p}"),
        None => format!("{proto}/any"),
    }
}

/// Connections decided by each rule, and (last) by the default deny. Lock-free: counted
/// at every accept.
#[derive(Debug)]
pub struct Counters {
    counts: Vec<AtomicU64>,
}

impl Counters {
    pub fn new(policy: &Policy) -> Counters {
        Counters {
            counts: (0..=policy.rules.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn count(&self, decision: Decision) {
        let i = decision.rule.unwrap_or(self.counts.len() - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_by_prefix() {
        assert!(in_network(ip("127.10.2.11"), ip("127.10.2.0"), 24));
        assert!(!in_network(ip("127.10.3.11"), ip("127.10.2.0"), 24));
        assert!(in_network(ip("10.1.2.3"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("127.10.2.11"), ip("127.10.2.11"), 32));
        assert!(!in_network(ip("::1"), ip("127.0.0.1"), 32));
        assert!(in_network(ip("fd00::5"), ip("fd00::"), 64));
    }

    #[test]
    fn first_match_wins_and_the_rest_is_refused() {
        let policy = Policy {
            server: "s".into(),
            address: ip("127.0.0.5"),
            ports: vec![],
            rules: vec![
                Rule {
                    action: Action::Deny,
                    sources: Sources::Networks(vec![(ip("127.0.0.9"), 32)]),
                    port: None,
                    protocol: None,
                    because: "deny".into(),
                },
                Rule {
                    action: Action::Allow,
                    sources: Sources::Networks(vec![(ip("127.0.0.0"), 24)]),
                    port: Some(80),
                    protocol: Some(Protocol::Tcp),
                    because: "allow".into(),
                },
            ],
        };
        let d = |src: &str, port, proto| policy.decide(ip(src), port, proto);
        assert_eq!(
            d("127.0.0.9", 80, Protocol::Tcp),
            Decision {
                allowed: false,
                rule: Some(0)
            }
        );
        assert_eq!(
            d("127.0.0.8", 80, Protocol::Tcp),
            Decision {
                allowed: true,
                rule: Some(1)
            }
        );
        assert_eq!(
            d("127.0.0.8", 80, Protocol::Udp),
            Decision {
                allowed: false,
                rule: None
            }
        );
        assert_eq!(
            d("127.0.0.8", 81, Protocol::Tcp),
            Decision {
                allowed: false,
                rule: None
            }
        );
        assert_eq!(
            d("127.0.1.8", 80, Protocol::Tcp),
            Decision {
                allowed: false,
                rule: None
            }
        );
        let counters = Counters::new(&policy);
        counters.count(d("127.0.0.9", 80, Protocol::Tcp));
        counters.count(d("127.0.1.8", 80, Protocol::Tcp));
        counters.count(d("127.0.1.8", 80, Protocol::Tcp));
        assert_eq!(counters.snapshot(), vec![1, 0, 2]);
    }
}
