//! The curriculum's second design with real processes: a load balancer in front of two
//! web + app servers. Round robin shares, a server killed under load, a paused server, a
//! drained server, and POSTs during a kill.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use webstack_test_support::http::{get, request};
use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// The design's health check: interval 500 ms, timeout 500 ms, rise 2, fall 2.
const DOWN_BOUND: Duration = Duration::from_millis(2 * 500 + 500);
const UP_BOUND: Duration = Duration::from_millis(2 * 500);
/// Scheduling slack on a loaded 2-core machine, on top of the bounds.
const SLACK: Duration = Duration::from_secs(2);

fn bench(stack: &Stack, args: &[&str]) -> Value {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let out = stack.run(&all);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn backend(stack: &Stack, name: &str) -> Value {
    let stats = SocketAddr::new(stack.host(10), 8404);
    let all: Value = serde_json::from_slice(&get(stats, "lb1", "/backends.json").body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn load_balancer_shares_fails_over_and_recovers() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    assert!(
        stack.up_output.contains("load_balancer"),
        "{}",
        stack.up_output
    );

    // Round robin: exactly equal shares.
    let r = bench(&stack, &["-n", "200", "-c", "4"]);
    assert_eq!(r["ok"], 200, "{r:#}");
    assert_eq!(
        (
            r["served_by"]["server1"].as_u64(),
            r["served_by"]["server2"].as_u64()
        ),
        (Some(100), Some(100)),
        "{r:#}"
    );

    // Kill server2 under load: not one GET fails, and the load balancer marks it down.
    let load = Command::new(BIN)
        .args(["bench", "--json", "-d", "4", "-c", "8"])
        .env("WEBSTACK_STATE_DIR", stack.state_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = backend(&stack, "server2")["requests"].as_u64().unwrap();
    eventually(Duration::from_secs(10), "the load reaches server2", || {
        (backend(&stack, "server2")["requests"].as_u64().unwrap() > before + 20).then_some(())
    });
    stack.ok(&["kill", "server2"]);
    let killed = Instant::now();
    eventually(
        DOWN_BOUND + SLACK,
        "server2 is marked down within fall × interval + timeout",
        || (backend(&stack, "server2")["up"] == false).then_some(()),
    );
    let detected = killed.elapsed();
    let out = load.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["errors"],
        serde_json::json!({}),
        "requests failed while server2 died: {r:#}"
    );
    assert!(r["ok"].as_u64().unwrap() > 100, "{r:#}");
    eprintln!("server2 marked down {detected:?} after the kill (bound {DOWN_BOUND:?})");

    // Started again, it rejoins after rise × interval and takes its share.
    stack.ok(&["start", "server2"]);
    let started = Instant::now();
    eventually(
        UP_BOUND + SLACK + Duration::from_secs(1),
        "server2 rejoins within rise × interval",
        || (backend(&stack, "server2")["up"] == true).then_some(()),
    );
    eprintln!(
        "server2 back up {:?} after its start finished (bound {UP_BOUND:?})",
        started.elapsed()
    );
    let r = bench(&stack, &["-n", "100", "-c", "2"]);
    assert_eq!(
        (
            r["served_by"]["server1"].as_u64(),
            r["served_by"]["server2"].as_u64()
        ),
        (Some(50), Some(50)),
        "{r:#}"
    );

    // A paused server hangs instead of refusing: its checks time out, it is taken out,
    // and requests go to the healthy one.
    stack.ok(&["pause", "server1"]);
    eventually(DOWN_BOUND + SLACK, "paused server1 is marked down", || {
        (backend(&stack, "server1")["up"] == false).then_some(())
    });
    let r = bench(
        &stack,
        &[
            "-n",
            "20",
            "-c",
            "2",
            "http://www.foobar.com:8080/static/style.css",
        ],
    );
    assert_eq!(
        (r["ok"].as_u64(), r["served_by"]["server2"].as_u64()),
        (Some(20), None),
        "{r:#}"
    );
    stack.ok(&["resume", "server1"]);
    eventually(
        UP_BOUND + SLACK + Duration::from_secs(2),
        "resumed server1 rejoins",
        || (backend(&stack, "server1")["up"] == true).then_some(()),
    );

    // Drain: no new requests.
    assert!(stack
        .ok(&["lb", "set", "server1", "drain"])
        .contains("Drain"));
    let r = bench(&stack, &["-n", "20", "-c", "2"]);
    assert_eq!(r["served_by"]["server2"].as_u64(), Some(20), "{r:#}");
    assert!(stack.ok(&["lb", "status"]).contains("DRAIN"));
    stack.ok(&["lb", "set", "server1", "ready"]);
    let bad = stack.run(&["lb", "set", "server1", "sleepy"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a backend state"));
}

#[test]
fn posts_during_a_kill_are_never_applied_twice() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    let lb = SocketAddr::new(stack.host(10), 8080);
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        if i == 10 {
            stack.ok(&["kill", "server2"]);
        }
        let body = format!(r#"{{"author":"test","message":"post-{i}"}}"#);
        let r = request(
            lb,
            "POST",
            "www.foobar.com",
            "/api/messages",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if r.status == 201 {
            acknowledged.push(format!("post-{i}"));
        } else {
            assert!(
                r.status == 502 || r.status == 503,
                "{} {}",
                r.status,
                r.text()
            );
        }
    }
    let list = get(lb, "www.foobar.com", "/api/messages");
    let v: Value = serde_json::from_slice(&list.body).unwrap();
    let stored: Vec<String> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect();
    for i in 0..30 {
        let name = format!("post-{i}");
        let copies = stored.iter().filter(|m| **m == name).count();
        assert!(copies <= 1, "{name} was applied {copies} times");
        if acknowledged.contains(&name) {
            assert_eq!(copies, 1, "acknowledged {name} is missing");
        }
    }
    assert!(
        acknowledged.len() >= 25,
        "too few POSTs succeeded: {acknowledged:?}"
    );
}
