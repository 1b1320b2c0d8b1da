//! Automatic database failover on the shipped `ha` design: kill -9 of the primary under
//! writes through the site is followed by the replica taking over by itself, with every
//! acknowledged write on it and writes going on without a command; a paused primary
//! (which the app servers cannot vouch for either way) causes no failover.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// A guestbook write through the site (HTTPS on the floating IP), as a user makes it.
fn post(stack: &Stack, message: &str) -> u16 {
    let ca = stack.state_dir().join("stacks/ha/tls/ca.crt");
    let vip = stack.host(100);
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(&ca)
        .args(["--resolve", &format!("www.foobar.com:8443:{vip}")])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", &format!(r#"{{"author":"t","message":"{message}"}}"#)])
        .arg("https://www.foobar.com:8443/api/messages")
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// Every message a database server of the stack holds.
fn held_by(stack: &Stack, server: &str) -> Vec<String> {
    webstack_test_support::messages_held(
        &stack
            .state_dir()
            .join(format!("stacks/ha/servers/{server}/database/mysqld.sock")),
    )
}

fn log_has(stack: &Stack, server: &str, text: &str) -> Option<String> {
    let log = stack.ok(&["logs", server, "--grep", text]);
    (!log.trim().is_empty()).then_some(log)
}

#[test]
fn the_replica_takes_over_a_killed_primary_and_loses_no_acknowledged_write() {
    let stack = Arc::new(Stack::up(BIN.as_ref(), "ha"));
    eventually(Duration::from_secs(30), "db2 watches db1", || {
        log_has(&stack, "db2", "failover: watching db1")
    });

    // A paused primary: db2 suspects it, but the app servers cannot vouch that it is gone
    // (their queries hang as db2's do), so nothing fails over.
    stack.ok(&["pause", "db1"]);
    eventually(
        Duration::from_secs(10),
        "db2 suspects the paused db1",
        || log_has(&stack, "db2", "failover: suspect"),
    );
    stack.ok(&["resume", "db1"]);
    eventually(Duration::from_secs(10), "db2 sees db1 answer again", || {
        log_has(&stack, "db2", "answers again; no failover")
    });
    let status = stack.ok(&["db", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("db1") && l.contains("primary")),
        "a pause caused a failover:\n{status}"
    );
    assert!(!status.contains("last automatic failover"), "{status}");

    let writers = {
        let stack = stack.clone();
        webstack_test_support::Writers::start(2, "fo", move |m| post(&stack, m))
    };
    let patience = Duration::from_secs(60);
    writers.wait_for(10, patience, "writes are acknowledged before the kill");

    stack.ok(&["kill", "db1"]);
    let took = eventually(Duration::from_secs(20), "db2 takes over by itself", || {
        log_has(&stack, "db2", "failover: db2 is the primary")
    });
    eprintln!("{}", took.trim());
    let before = writers.acknowledged();
    writers.wait_for(
        before + 10,
        patience,
        "writes go on after the failover, without a command",
    );
    let outcomes = writers.stop();
    let acked: Vec<&String> = outcomes
        .iter()
        .filter(|(_, s)| *s == 201)
        .map(|(m, _)| m)
        .collect();
    let failed = outcomes.len() - acked.len();
    eprintln!("{} writes, {failed} failed", outcomes.len());
    let held = held_by(&stack, "db2");
    let lost: Vec<&&String> = acked.iter().filter(|m| !held.contains(m)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost in the failover: {lost:?}"
    );

    let status = stack.ok(&["db", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("db2") && l.contains("primary")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("db1") && l.contains("fenced")),
        "{status}"
    );
    assert!(
        status.contains("last automatic failover: db1 → db2")
            && status.contains("app1, app2 cannot reach it either"),
        "{status}"
    );
}
