//! Two name servers on the shipped `ha` design: the secondary takes the zone by AXFR and
//! answers exactly as the primary does (same records, same SOA serial, NS naming both);
//! only the secondary may transfer the zone; with the primary killed every name still
//! resolves through the secondary, even after the secondary restarts; and the primary's
//! next start (a new serial) reaches the secondary by NOTIFY.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// `dig +norec +short` against one name server.
fn dig(server: IpAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["+norec", "+short", "+time=1", "+tries=1", "-p", "5353"])
        .arg(format!("@{server}"))
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn serial(server: IpAddr) -> Option<u64> {
    dig(server, &["foobar.com", "SOA"])
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
}

#[test]
fn the_secondary_answers_like_the_primary_and_alone() {
    let stack = Stack::up(BIN.as_ref(), "ha");
    let (ns1, ns2) = (stack.host(2), stack.host(3));
    let vip = stack.host(100).to_string();
    for q in [
        vec!["www.foobar.com", "A"],
        vec!["foobar.com", "SOA"],
        vec!["foobar.com", "NS"],
        vec!["ns2.foobar.com", "A"],
        vec!["nothing.foobar.com", "A"],
    ] {
        assert_eq!(dig(ns1, &q), dig(ns2, &q), "{q:?}");
    }
    assert_eq!(dig(ns2, &["www.foobar.com", "A"]), vip);
    assert_eq!(
        dig(ns1, &["foobar.com", "NS"]),
        "ns1.foobar.com.\nns2.foobar.com."
    );
    assert!(serial(ns1).is_some() && serial(ns1) == serial(ns2));
    // A zone transfer is for the secondary only (BIND's allow-transfer).
    let axfr = Command::new("dig")
        .args(["-p", "5353", &format!("@{ns1}"), "foobar.com", "AXFR"])
        .output()
        .unwrap();
    let axfr = String::from_utf8_lossy(&axfr.stdout);
    assert!(
        !axfr.contains("IN\tA\t"),
        "a stranger transferred the zone:\n{axfr}"
    );
    assert!(stack.ok(&["status"]).contains("dns2"));

    // The primary lost: every name resolves through the secondary, also after the
    // secondary itself restarts (it keeps its copy of the zone).
    stack.ok(&["kill", "dns"]);
    assert_eq!(dig(ns2, &["www.foobar.com", "A"]), vip);
    // webstack's own tools resolve the site through the remaining name server too.
    let bench = stack.ok(&["bench", "-n", "20", "-c", "2"]);
    assert!(bench.contains("20 ok"), "{bench}");
    stack.ok(&["kill", "dns2"]);
    stack.ok(&["start", "dns2"]);
    assert_eq!(dig(ns2, &["www.foobar.com", "A"]), vip);
    assert!(stack
        .ok(&["logs", "dns2", "--grep", "answering from the copy"])
        .contains("zone.axfr"));

    // The primary comes back with a new serial and tells the secondary (NOTIFY), which
    // transfers it without waiting for its refresh interval (an hour).
    let old = serial(ns2).unwrap();
    stack.ok(&["start", "dns"]);
    let new = serial(ns1).unwrap();
    assert!(new > old, "{new} after {old}");
    eventually(
        Duration::from_secs(20),
        "the secondary has the new serial",
        || (serial(ns2) == Some(new)).then_some(()),
    );
    assert!(stack
        .ok(&["logs", "dns", "--grep", "NOTIFY"])
        .contains("told the secondary"));
}
