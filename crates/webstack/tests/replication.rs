//! Primary-replica MySQL with real MariaDB: reads from the replica, a replica that refuses
//! writes and catches up after a crash, a promotion that loses no acknowledged write, and
//! semi-sync falling back to async where everyone can see it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use webstack_test_support::http::{get, request};
use webstack_test_support::{alive, eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

fn lb(stack: &Stack) -> SocketAddr {
    SocketAddr::new(stack.host(10), 8080)
}

fn post(stack: &Stack, message: &str) -> u16 {
    let body = format!(r#"{{"author":"test","message":"{message}"}}"#);
    request(
        lb(stack),
        "POST",
        "www.foobar.com",
        "/api/messages",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .status
}

/// The messages as some database server has them, and which one answered.
fn messages(stack: &Stack) -> (Vec<String>, String) {
    let r = get(lb(stack), "www.foobar.com", "/api/messages");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let list = v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (list, r.header("x-database").unwrap_or("").to_string())
}

fn replication(stack: &Stack, server: &str) -> Value {
    let text = std::fs::read_to_string(
        stack
            .state_dir()
            .join(format!("stacks/distributed/servers/{server}/node.json")),
    )
    .unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    v["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["kind"] == "database")
        .map(|c| c["replication"].clone())
        .unwrap_or_default()
}

#[test]
fn replica_serves_reads_refuses_writes_and_catches_up_after_a_crash() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    assert_eq!(post(&stack, "first"), 201);
    // A write on the primary is readable on the replica within a bound.
    eventually(
        Duration::from_secs(5),
        "the replica serves the first message",
        || {
            let (list, by) = messages(&stack);
            (by == "server2" && list.contains(&"first".to_string())).then_some(())
        },
    );

    // The replica refuses writes, even from an app server with every grant (through
    // server2's relay, the connection comes from server2's address, as the app's do).
    let password = std::fs::read_to_string(
        stack
            .state_dir()
            .join("stacks/distributed/secrets/database.password"),
    )
    .unwrap();
    let relay = stack
        .state_dir()
        .join("stacks/distributed/servers/server2/run/db-server2.sock");
    let out = Command::new("mariadb")
        .args(["--socket", relay.to_str().unwrap(), "-u", "foobar", &format!("-p{}", password.trim()), "foobar"])
        .args(["-e", "INSERT INTO messages (author, message, created_ms, served_by) VALUES ('x', 'sneaky', 0, 'x')"])
        .output()
        .expect("the mariadb client runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill -9 the replica's mariadbd during a stream of writes: it comes back and catches
    // up, with no gap and no duplicate.
    let replica_pid = stack.component("server2", "database")["child_pid"]
        .as_u64()
        .unwrap() as u32;
    let mut acknowledged = vec!["first".to_string()];
    for i in 0..20 {
        if i == 5 {
            // SAFETY: kill(2) on the pid the stack reported for server2's mariadbd.
            unsafe { libc::kill(replica_pid as i32, libc::SIGKILL) };
        }
        let m = format!("stream-{i}");
        if post(&stack, &m) == 201 {
            acknowledged.push(m);
        }
    }
    assert!(
        acknowledged.len() >= 15,
        "writes failed while the replica was down: {acknowledged:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the killed mariadbd is gone",
        || (!alive(replica_pid)).then_some(()),
    );
    let (list, _) = eventually(
        Duration::from_secs(60),
        "the restarted replica has caught up",
        || {
            let (list, by) = messages(&stack);
            (by == "server2" && acknowledged.iter().all(|m| list.contains(m))).then_some((list, by))
        },
    );
    for m in &acknowledged {
        assert_eq!(
            list.iter().filter(|x| *x == m).count(),
            1,
            "{m} is duplicated on the replica"
        );
    }
    let st = replication(&stack, "server2");
    assert_eq!(st["role"], "replica", "{st}");
    let status = stack.ok(&["db", "status"]);
    assert!(
        status.contains("replica") && status.contains("io yes sql yes"),
        "{status}"
    );
}

#[test]
fn promoting_the_replica_loses_no_acknowledged_write() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        if i == 25 {
            stack.ok(&["kill", "server1"]);
        }
        let m = format!("w-{i}");
        if post(&stack, &m) == 201 {
            acknowledged.push(m);
        }
    }
    assert!(acknowledged.len() >= 25, "{acknowledged:?}");
    let said = stack.ok(&["db", "promote", "server2"]);
    assert!(
        said.contains("now takes writes") && said.contains("fenced"),
        "{said}"
    );
    assert!(
        said.contains("app servers server2 now write to server2"),
        "{said}"
    );

    let (list, by) = eventually(
        Duration::from_secs(10),
        "reads come from the new primary",
        || {
            let (list, by) = messages(&stack);
            (by == "server2").then_some((list, by))
        },
    );
    let missing: Vec<&String> = acknowledged.iter().filter(|m| !list.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on the new primary ({by}): {missing:?}"
    );

    // New writes through the app succeed on the new primary, at once.
    assert_eq!(post(&stack, "after-promotion"), 201);
    let status = stack.ok(&["db", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("server2") && l.contains("primary")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("server1") && l.contains("fenced")),
        "{status}"
    );

    // Bad input gets clear errors.
    let again = stack.run(&["db", "promote", "server2"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already the primary"));
    let not_db = stack.run(&["db", "promote", "lb1"]);
    assert!(String::from_utf8_lossy(&not_db.stderr).contains("runs no database"));
    let fenced = stack.run(&["db", "promote", "server1"]);
    assert!(String::from_utf8_lossy(&fenced.stderr).contains("fenced"));

    // The old primary comes back only as a rebuilt replica of the new one.
    let rebuilt = stack.ok(&["db", "rebuild", "server1"]);
    assert!(
        rebuilt.contains("server1 replicates from server2"),
        "{rebuilt}"
    );
    eventually(
        Duration::from_secs(60),
        "the rebuilt server1 has every message",
        || {
            let st = replication(&stack, "server1");
            (st["role"] == "replica" && st["lag_ms"].as_f64().is_some_and(|l| l < 1000.0))
                .then_some(())
        },
    );
}

#[test]
fn semi_sync_falling_back_to_async_is_visible() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    eventually(Duration::from_secs(10), "semi-sync is on", || {
        (replication(&stack, "server1")["semi_sync"] == "on").then_some(())
    });
    stack.ok(&["stop", "server2"]);
    // The write waits for the timeout (1 s in the design), then is acknowledged anyway.
    assert_eq!(post(&stack, "while-alone"), 201);
    eventually(Duration::from_secs(10), "the primary reports async", || {
        (replication(&stack, "server1")["semi_sync"] == "off").then_some(())
    });
    assert!(stack.ok(&["db", "status"]).contains("off (async)"));
    let log = stack.ok(&["logs", "server1"]);
    assert!(
        log.contains("WARNING: semi-synchronous replication fell back to asynchronous"),
        "{log}"
    );
    stack.ok(&["start", "server2"]);
    eventually(Duration::from_secs(30), "semi-sync is back on", || {
        (replication(&stack, "server1")["semi_sync"] == "on").then_some(())
    });
}

/// Every message a database server of the stack holds.
fn all_messages(stack: &Stack, server: &str) -> Vec<String> {
    webstack_test_support::messages_held(&stack.state_dir().join(format!(
        "stacks/distributed/servers/{server}/database/mysqld.sock"
    )))
}

#[test]
fn a_switchover_under_writes_fails_none_and_loses_none() {
    let stack = std::sync::Arc::new(Stack::up(BIN.as_ref(), "distributed"));
    let writers = {
        let stack = stack.clone();
        webstack_test_support::Writers::start(3, "sw", move |m| post(&stack, m))
    };
    let patience = Duration::from_secs(30);
    writers.wait_for(
        30,
        patience,
        "writes are acknowledged before the switchover",
    );

    let said = stack.ok(&["db", "switchover", "server2"]);
    let before = writers.acknowledged();
    assert!(
        said.contains("server1 now replicates from server2"),
        "{said}"
    );
    assert!(
        said.contains("app servers server1, server2 now write to server2"),
        "{said}"
    );
    let pause: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("writes were paused for "))
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("the pause is not reported: {said}"));
    eprintln!("switchover: writes paused for {pause} ms");
    writers.wait_for(
        before + 30,
        patience,
        "writes are acknowledged after the switchover",
    );
    let outcomes = writers.stop();
    let failed: Vec<&(String, u16)> = outcomes.iter().filter(|(_, s)| *s != 201).collect();
    assert!(
        failed.is_empty(),
        "writes failed during the switchover: {failed:?}"
    );
    let held = all_messages(&stack, "server2");
    for (m, _) in &outcomes {
        assert_eq!(
            held.iter().filter(|x| *x == m).count(),
            1,
            "{m} is missing or doubled on the new primary"
        );
    }
    // The old primary follows the new one, with no rebuild, and gets every write.
    eventually(
        Duration::from_secs(30),
        "server1 replicates every write from server2",
        || (all_messages(&stack, "server1").len() == held.len()).then_some(()),
    );
    let status = stack.ok(&["db", "status"]);
    assert!(
        status.lines().any(|l| l.starts_with("server1")
            && l.contains("replica")
            && l.contains("io yes sql yes")),
        "{status}"
    );

    let again = stack.run(&["db", "switchover", "server2"]);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("already the primary; switch over to one of its replicas (server1)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let not_db = stack.run(&["db", "switchover", "lb1"]);
    assert!(String::from_utf8_lossy(&not_db.stderr).contains("runs no database"));
    // And back, since the old primary is a healthy replica now.
    let back = stack.ok(&["db", "switchover", "server1"]);
    assert!(
        back.contains("server2 now replicates from server1"),
        "{back}"
    );
}
