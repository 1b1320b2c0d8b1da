//! Stopping a server of the distributed design under load costs no request: the web
//! server stops accepting, answers each further request on its kept-alive connections
//! with `Connection: close`, and finishes what is in flight; the load balancer sends the
//! next requests to the other server (a refused connection is tried on another backend).

use std::time::Duration;

use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

#[test]
fn stopping_a_web_server_under_load_fails_no_request() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    // GETs, and POSTs, which the load balancer never sends twice: a POST that met a
    // connection closed under it would fail, so only a clean end of each kept-alive
    // connection keeps them all.
    for (method, path) in [("GET", "/api/messages"), ("POST", "/api/messages")] {
        let load = stack.load(&[
            &format!("http://www.foobar.com:8080{path}"),
            "--method",
            method,
            "-c",
            "4",
            "-d",
            "5",
        ]);
        // Wait until server2 is taking its share of the load, then stop it.
        eventually(Duration::from_secs(10), "server2 serves requests", || {
            let text = stack.ok(&["lb", "status"]);
            let line = text.lines().find(|l| l.contains("server2"))?;
            let requests: u64 = line.split_whitespace().nth(5)?.parse().ok()?;
            (requests > 50).then_some(())
        });
        stack.ok(&["stop", "server2"]);
        let report = load.report();
        assert_eq!(
            report["errors"],
            serde_json::json!({}),
            "{method} {path}: {report}"
        );
        assert!(
            report["ok"].as_u64().unwrap() > 50,
            "{method} {path}: {report}"
        );
        stack.ok(&["start", "server2"]);
    }
}
