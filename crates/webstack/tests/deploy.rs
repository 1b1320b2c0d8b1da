//! `webstack deploy`: a rolling deploy under load fails no request, a release that fails
//! its health check is rolled back with the site up, and on one server the downtime the
//! deploy reports is the gap the client saw.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use webstack_test_support::http::get;
use webstack_test_support::{eventually, Load, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// An application command that names its release, as the built-in app does.
const APP: &str = r#"
import http.server, os
VERSION = os.environ["WEBSTACK_APP_VERSION"]
BROKEN = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "BROKEN"))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s version=%s" % (os.environ["WEBSTACK_SERVER"], VERSION)).encode()
        self.send_response(500 if BROKEN else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A codebase folder of the user's: `public/` and the command above.
fn codebase(dir: &Path, broken: bool) {
    std::fs::create_dir_all(dir.join("public")).unwrap();
    std::fs::write(dir.join("public/hello.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("app.py"), APP).unwrap();
    if broken {
        std::fs::write(dir.join("BROKEN"), "").unwrap();
    }
}

fn deploy(stack: &Stack, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["deploy", "--json"];
    all.extend_from_slice(args);
    let out = stack.run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the load's requests reach `server`'s web server (its access log names the
/// client), so the deploy runs under it.
fn wait_for_load(stack: &Stack, name: &str, server: &str) {
    let log = stack
        .state_dir()
        .join(format!("stacks/{name}/servers/{server}/access.log"));
    eventually(
        std::time::Duration::from_secs(20),
        "the load reaches the site",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("webstack-bench"))
                .map(|_| ())
        },
    );
}

#[test]
fn a_rolling_deploy_under_load_fails_no_request() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    let lb = SocketAddr::new(stack.host(10), 8080);
    let load = stack.load(&["-c", "4", "-d", "6"]);
    wait_for_load(&stack, "distributed", "server1");

    let (ok, report, said) = deploy(&stack, &["--version", "2"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("server1: drained on lb1") && said.contains("server2: back in service"),
        "{said}"
    );
    assert_eq!(report["version"], "2");
    for s in report["servers"].as_array().unwrap() {
        assert_eq!(s["outcome"], "deployed", "{report}");
        assert_eq!(s["drained"], true, "{report}");
    }

    let r = load.report();
    assert_eq!(
        Load::failed(&r),
        0,
        "requests failed during the deploy: {r}"
    );
    // Both releases answered while it ran: the mixed state is visible to clients.
    assert!(
        r["versions"]["1"].as_u64() > Some(0) && r["versions"]["2"].as_u64() > Some(0),
        "{r}"
    );
    for server in ["server1", "server2"] {
        assert_eq!(stack.component(server, "app")["version"], "2");
    }
    let answer = get(lb, "www.foobar.com", "/health");
    assert_eq!(answer.header("x-app-version"), Some("2"));
    assert!(stack.ok(&["status"]).contains("(version 2)"));

    // Bad input gets a clear error and exit status 2.
    let out = stack.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--version"));
    let out = stack.run(&["deploy", "/tmp", "--version", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in"));
}

#[test]
fn a_release_that_fails_its_health_check_is_rolled_back_with_the_site_up() {
    let dir = tempfile::tempdir().unwrap();
    codebase(&dir.path().join("site"), false);
    codebase(&dir.path().join("broken"), true);
    let design = dir.path().join("pair.toml");
    std::fs::write(
        &design,
        r#"
[stack]
name = "pair"
domain = "example.test"

[dns]
address = "127.10.0.2"
port = 5353
records = { www = ["lb1"] }

[codebase]
path = "site"
command = ["python3", "app.py"]

[servers.lb1]
address = "127.10.0.10"
load_balancer = { port = 8080, backends = ["s1", "s2"], stats_port = 8404, health_check = { interval_ms = 200, timeout_ms = 200, rise = 1, fall = 2 } }

[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { port = 8000, database = "db1" }

[servers.s2]
address = "127.10.0.12"
web = { port = 8080, upstreams = ["s2"] }
app = { port = 8000, database = "db1" }

[servers.db1]
address = "127.10.0.13"
database = { port = 3306 }
"#,
    )
    .unwrap();
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let load = stack.load(&["-c", "2", "-d", "8", "http://www.example.test:8080/app"]);
    wait_for_load(&stack, "pair", "s1");

    let broken = dir.path().join("broken");
    let (ok, report, said) = deploy(&stack, &[broken.to_str().unwrap(), "--health-timeout", "2"]);
    assert!(!ok, "a broken release was deployed: {said}");
    assert!(said.contains("failed its health check"), "{said}");
    assert!(said.contains("s1: back on version 1"), "{said}");
    assert!(
        said.contains("s1 was rolled back to version 1, and s2 stays on the version it runs"),
        "{said}"
    );
    let outcomes: Vec<(&str, &str)> = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap(),
                s["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("s1", "rolled back"), ("s2", "not deployed")]);

    let r = load.report();
    assert_eq!(
        Load::failed(&r),
        0,
        "requests failed while the broken release was tried: {r}"
    );
    assert_eq!(r["versions"].as_object().unwrap().len(), 1, "{r}");
    for server in ["s1", "s2"] {
        let app = SocketAddr::new(stack.host(if server == "s1" { 11 } else { 12 }), 8080);
        let answer = get(app, "www.example.test", "/app");
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("x-app-version"), Some("1"));
        assert_eq!(stack.component(server, "app")["version"], "1");
    }
}

#[test]
fn on_one_server_the_reported_downtime_is_the_gap_the_client_saw() {
    let dir = tempfile::tempdir().unwrap();
    codebase(&dir.path().join("site"), false);
    let v2 = dir.path().join("site-v2");
    codebase(&v2, false);
    std::fs::write(v2.join("VERSION"), "2.0.0\n").unwrap();
    let design = dir.path().join("one.toml");
    std::fs::write(
        &design,
        r#"
[stack]
name = "one"
domain = "example.test"

[dns]
address = "127.10.0.2"
port = 5353
records = { www = ["s1"] }

[codebase]
path = "site"
command = ["python3", "app.py"]

[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { port = 8000, storage = "sqlite" }
"#,
    )
    .unwrap();
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let site = SocketAddr::new(stack.host(11), 8080);
    // A fixed rate, so the client's gap is measured at a known resolution (5 ms).
    let load = stack.load(&[
        "-c",
        "4",
        "-d",
        "6",
        "--rate",
        "200",
        "http://www.example.test:8080/app",
    ]);
    wait_for_load(&stack, "one", "s1");

    let (ok, report, said) = deploy(&stack, &[v2.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(
        said.contains("WARNING: design one has one app server (s1)"),
        "{said}"
    );
    assert_eq!(report["version"], "2.0.0");
    let downtime = report["downtime_ms"].as_f64().unwrap();
    assert!(downtime > 0.0, "a restarted command leaves a gap: {report}");
    assert!(
        said.contains(&format!("downtime {downtime:.0} ms")),
        "{said}"
    );

    let r = load.report();
    let gap = r["longest_gap_ms"].as_f64().unwrap();
    assert!(Load::failed(&r) > 0, "the client saw no failure: {r}");
    // The deploy's probe and the client sample every 5 ms; each may miss the edges by a
    // few samples and a request in flight.
    eprintln!(
        "deploy reported {downtime:.1} ms of downtime; the client's longest gap was {gap:.1} ms"
    );
    let tolerance = 50.0_f64.max(downtime * 0.5);
    assert!(
        (gap - downtime).abs() <= tolerance,
        "the deploy reported {downtime:.0} ms of downtime, the client saw a {gap:.0} ms gap: {said}\n{r}"
    );
    let answer = get(site, "www.example.test", "/app");
    assert_eq!(answer.header("x-app-version"), Some("2.0.0"));
    assert!(answer.text().contains("version=2.0.0"));
}
