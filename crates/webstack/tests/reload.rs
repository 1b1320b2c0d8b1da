//! `webstack reload`: under load, a changed design that adds a server as a backend and
//! removes another is applied without a failed request; a change that needs a running
//! server restarted is refused before anything changes; `--dry-run` changes nothing; a
//! design file edited but not reloaded changes nothing either.

use std::net::SocketAddr;

use serde_json::Value;
use webstack_test_support::{Load, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

const DESIGN: &str = r#"
[stack]
name = "rl"
domain = "example.test"

[dns]
address = "127.10.0.2"
port = 5353
records = { www = ["lb1"] }

[codebase]
builtin = "foobar"

[servers.lb1]
address = "127.10.0.10"
load_balancer = { port = 8080, backends = ["s1", "s2"], stats_port = 8404, health_check = { interval_ms = 200, timeout_ms = 200, rise = 2, fall = 2 } }
# No firewall here, so that the test reads the stats listener from 127.0.0.1.

[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { port = 8000, database = "db1" }
firewall = {}

[servers.s2]
address = "127.10.0.12"
web = { port = 8080, upstreams = ["s2"] }
app = { port = 8000, database = "db1" }
firewall = {}

[servers.db1]
address = "127.10.0.13"
database = { port = 3306 }
firewall = {}
"#;

/// The design with s2 replaced by s3 (a new server at another address) in the pool.
fn swapped() -> String {
    DESIGN
        .replace(r#"backends = ["s1", "s2"]"#, r#"backends = ["s1", "s3"]"#)
        .replace("[servers.s2]", "[servers.s3]")
        .replace("127.10.0.12", "127.10.0.14")
        .replace(r#"upstreams = ["s2"]"#, r#"upstreams = ["s3"]"#)
}

fn servers(stack: &Stack) -> Vec<String> {
    stack.status()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn backends(stack: &Stack) -> Vec<Value> {
    let stats = SocketAddr::new(stack.host(10), 8404);
    let r = webstack_test_support::http::get(stats, "lb1", "/backends.json");
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn a_reload_that_swaps_a_backend_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rl.toml");
    std::fs::write(&file, DESIGN).unwrap();
    let stack = Stack::up(BIN.as_ref(), file.to_str().unwrap());

    // Editing the file changes nothing by itself: the stack runs what it was started with.
    std::fs::write(&file, swapped()).unwrap();
    assert!(servers(&stack).contains(&"s2".to_string()));
    let dry = stack.ok(&["reload", "--dry-run"]);
    for line in [
        "lb1: load balancer: backends s1, s2 → s1, s3 (live)",
        "s3 is a new server: it starts",
        "s2 is no longer in the design",
        "db1: database: accounts for the app servers at",
        "db1: firewall:",
    ] {
        assert!(dry.contains(line), "{line:?} is not in:\n{dry}");
    }
    assert!(
        servers(&stack).contains(&"s2".to_string()),
        "a dry run changed the stack"
    );

    // A change a running server cannot take live is refused, and nothing changes.
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, swapped().replace("port = 3306", "port = 3307")).unwrap();
    let out = stack.run(&["reload", moved.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "the reload is refused, and nothing was changed: db1: the database's settings change"
        ),
        "{err}"
    );
    assert!(err.contains("webstack down"), "{err}");
    assert_eq!(backends(&stack).len(), 2);
    assert!(servers(&stack).contains(&"s2".to_string()));

    let load = stack.load(&["-c", "4", "-d", "6"]);
    // The load runs before and after the reload: wait until s2 has served some of it.
    webstack_test_support::eventually(
        std::time::Duration::from_secs(20),
        "the load reaches s2",
        || {
            backends(&stack)
                .iter()
                .any(|b| b["name"] == "s2" && b["requests"].as_u64() > Some(10))
                .then_some(())
        },
    );
    let said = stack.ok(&["reload"]);
    for line in [
        "lb1: applied: load balancer: backends s1, s2 → s1, s3",
        "db1: applied: database: accounts for the app servers at",
        "started s3",
        "s3: in service on lb1",
        "stopped s2 gracefully",
    ] {
        assert!(said.contains(line), "{line:?} is not in:\n{said}");
    }
    let r = load.report();
    assert_eq!(
        Load::failed(&r),
        0,
        "requests failed during the reload: {r}"
    );
    assert!(r["served_by"]["s2"].as_u64() > Some(0), "{r}");
    assert!(r["served_by"]["s3"].as_u64() > Some(0), "{r}");

    let names = servers(&stack);
    assert!(
        names.contains(&"s3".to_string()) && !names.contains(&"s2".to_string()),
        "{names:?}"
    );
    let now: Vec<Value> = backends(&stack);
    assert_eq!(
        now.iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["s1", "s3"]
    );
    // s1's health and counters came through the reload: it was never re-checked from down.
    assert!(now[0]["up"] == true && now[0]["went_down"] == 0, "{now:?}");
    assert!(stack.status()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["health"]["healthy"] == true)));
    // Reloading the same design again changes nothing.
    assert!(stack.ok(&["reload"]).contains("nothing changes"));
}
