//! A server's policy as an nftables ruleset for a real host: an inet table whose input
//! chain drops by default, accepts established and related traffic, then the policy's
//! rules in order. There is deliberately no `iif lo accept`: on a loopback lab it would
//! accept everything, and a server's connections to itself are allowed by its own rules.

use std::net::IpAddr;

use webstack_topology::Protocol;

use crate::policy::{Action, Policy, Sources};

/// The ruleset, ready for `nft -f`.
pub fn nftables(policy: &Policy) -> String {
    let table = format!("webstack_{}", policy.server.replace('-', "_"));
    let mut out = format!(
        "#!/usr/sbin/nft -f\n# webstack firewall of {} ({}), derived from the design.\n\
         table inet {table}\ndelete table inet {table}\n\
         table inet {table} {{\n  chain input {{\n    type filter hook input priority filter; policy drop;\n\
         \x20   ct state established,related accept\n    ct state invalid drop\n",
        policy.server, policy.address
    );
    for rule in &policy.rules {
        let verdict = match rule.action {
            Action::Allow => "accept",
            Action::Deny => "drop",
        };
        let protocols: Vec<&str> = match rule.protocol {
            Some(Protocol::Tcp) => vec!["tcp"],
            Some(Protocol::Udp) => vec!["udp"],
            None => vec!["tcp", "udp"],
        };
        let families: Vec<(&str, Vec<String>)> = match &rule.sources {
            Sources::Any => vec![("", Vec::new())],
            Sources::Networks(nets) => {
                let mut v4 = Vec::new();
                let mut v6 = Vec::new();
                for (ip, prefix) in nets {
                    let text = format!("{ip}/{prefix}");
                    match ip {
                        IpAddr::V4(_) => v4.push(text),
                        IpAddr::V6(_) => v6.push(text),
                    }
                }
                let mut f = Vec::new();
                if !v4.is_empty() {
                    f.push(("ip", v4));
                }
                if !v6.is_empty() {
                    f.push(("ip6", v6));
                }
                f
            }
        };
        out.push_str(&format!("    # {}\n", rule.because.replace('\n', " ")));
        for (family, nets) in &families {
            for proto in &protocols {
                let source = if nets.is_empty() {
                    String::new()
                } else {
                    format!("{family} saddr {{ {} }} ", nets.join(", "))
                };
                let port = rule
                    .port
                    .map(|p| format!("{proto} dport {p} "))
                    .unwrap_or_else(|| format!("meta l4proto {proto} "));
                out.push_str(&format!("    {source}{port}{verdict}\n"));
            }
        }
    }
    out.push_str("  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_shape() {
        let d = webstack_topology::load("secured").unwrap().design;
        let text = nftables(&crate::derive(&d, "server1").unwrap());
        assert!(text.contains("policy drop;"), "{text}");
        assert!(text.contains("ct state established,related accept"));
        assert!(!text.contains("iif lo accept"));
        assert!(
            text.contains("ip saddr { 127.10.2.10/32 } tcp dport 8080 accept"),
            "{text}"
        );
        assert!(
            text.contains("ip saddr { 127.10.2.11/32, 127.10.2.12/32 } tcp dport 3306 accept"),
            "{text}"
        );
    }
}
