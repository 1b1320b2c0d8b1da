//! The monitoring service of a design, end to end, on one stack of the real binary
//! (lb1 → web1 → app1 → db1, every server with a firewall and an agent, and `monitor`
//! running the collector with a notify command):
//!
//! - a real Prometheus (Debian's) scrapes the collector and gets every agent's series;
//! - the collector is frozen (SIGSTOP) while requests go on: web1's agent buffers up to
//!   its bound, and after the collector returns every buffered record is held exactly
//!   once, and the agent's drop counter equals what is missing;
//! - kill -9 web1: ServerDown fires (notify runs), the dashboard (in headless Chromium)
//!   shows web1 down, and both clear after `webstack start web1`;
//! - kill -9 app1: a request fails with 502, and `webstack trace` names lb1, web1 and
//!   the app server that failed.
//!
//! Documented bound for a dead server: its agent is counted down after three silent
//! intervals (3 s with the default 1 s interval) and the rules run every second, so the
//! alert fires within about 4 s; the deadlines here are generous multiples of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");
/// web1's agent buffer: small, so the outage overflows it.
const WEB1_BUFFER: usize = 300;
const OUTAGE_REQUESTS: usize = 500;

fn design(notify_file: &Path) -> String {
    format!(
        r#"[stack]
name = "watched"
domain = "foobar.com"

[dns]
address = "127.10.9.2"
port = 5353

[dns.records]
www = ["lb1"]

[codebase]
builtin = "foobar"

[servers.lb1]
address = "127.10.9.10"
[servers.lb1.load_balancer]
port = 8080
backends = ["web1"]
[servers.lb1.firewall]
[servers.lb1.monitoring]

[servers.web1]
address = "127.10.9.11"
[servers.web1.web]
port = 8080
upstreams = ["app1"]
[servers.web1.firewall]
[servers.web1.monitoring]
buffer = {WEB1_BUFFER}
access_records = 0   # every access record, however many a second

[servers.app1]
address = "127.10.9.12"
[servers.app1.app]
port = 8000
database = "db1"
[servers.app1.firewall]
[servers.app1.monitoring]

[servers.db1]
address = "127.10.9.13"
[servers.db1.database]
port = 3306
[servers.db1.firewall]
[servers.db1.monitoring]

[servers.monitor]
address = "127.10.9.20"
[servers.monitor.collector]
port = 9200
notify = ["sh", "-c", "echo \"$WEBSTACK_ALERT $WEBSTACK_ALERT_STATE $WEBSTACK_ALERT_LABELS\" >> {}"]
[servers.monitor.firewall]
[servers.monitor.monitoring]
"#,
        notify_file.display()
    )
}

/// A child process (Prometheus, Chromium) killed by its pid when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl from `source` (the operator's address, which every firewall lets in).
fn curl(source: IpAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--interface"])
        .arg(source.to_string())
        .args(args)
        .output()
        .expect("curl runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), text)
}

fn json(source: IpAddr, url: &str) -> Value {
    let (ok, body) = curl(source, &[url]);
    assert!(ok, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// One value of an agent's /metrics, summed over the series whose labels all match.
fn agent_metric(source: IpAddr, agent: IpAddr, name: &str, labels: &[&str]) -> f64 {
    let (ok, text) = curl(source, &[&format!("http://{agent}:9100/metrics")]);
    assert!(ok, "{text}");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percent(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_collector_buffers_alerts_traces_and_draws_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.log");
    let path = dir.path().join("watched.toml");
    std::fs::write(&path, design(&notify)).unwrap();
    let stack = Stack::up(BIN.as_ref(), path.to_str().unwrap());
    let op = stack.host(254);
    let monitor = stack.host(20);
    let collector = format!("http://{monitor}:9200");
    assert!(
        stack
            .up_output
            .contains(&format!("the dashboard of monitor is {collector}/")),
        "{}",
        stack.up_output
    );
    eventually(Duration::from_secs(30), "all five agents report", || {
        let agents = json(op, &format!("{collector}/api/agents"));
        let up = agents
            .as_array()?
            .iter()
            .filter(|a| a["up"] == true)
            .count();
        (up == 5).then_some(())
    });

    prometheus_scrapes_the_collector(&stack, dir.path(), monitor);
    buffered_records_arrive_once_and_drops_are_counted(&stack, op, &collector);
    a_dead_server_alerts_notifies_and_shows_down(&stack, op, &collector, &notify);
    a_502_has_a_trace_naming_every_hop(&stack, op);
}

fn prometheus_scrapes_the_collector(stack: &Stack, dir: &Path, monitor: IpAddr) {
    // Prometheus connects from 127.0.0.1, which the collector's firewall lets in (its
    // dashboard and API are for this host).
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: collector\n    static_configs:\n      - targets: [\"{monitor}:9200\"]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let listen = stack.host(251);
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={listen}:9090"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (apt-get install prometheus)"),
    );
    let query = |q: &str| -> Vec<Value> {
        let url = format!("http://{listen}:9090/api/v1/query?query={}", percent(q));
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    eventually(
        Duration::from_secs(60),
        "Prometheus scrapes the collector",
        || (query("up{job=\"collector\"} == 1").len() == 1).then_some(()),
    );
    let agents = eventually(
        Duration::from_secs(30),
        "five agents up, as the collector says",
        || {
            let r = query("webstack_agent_up == 1");
            (r.len() == 5).then_some(r)
        },
    );
    let mut names: Vec<&str> = agents
        .iter()
        .filter_map(|a| a["metric"]["server"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["app1", "db1", "lb1", "monitor", "web1"]);
    // A series an agent sent, relayed by the collector: lb1's view of its backend.
    eventually(
        Duration::from_secs(30),
        "lb1's backend state through the collector",
        || {
            let r = query("webstack_lb_backend_up{server=\"lb1\",backend=\"web1\"}");
            (r.first()?["value"][1] == "1").then_some(())
        },
    );
}

fn buffered_records_arrive_once_and_drops_are_counted(stack: &Stack, op: IpAddr, collector: &str) {
    let web1 = stack.host(11);
    // Quiet web1 down to the test's own requests: lb1's health checks stop while it is
    // frozen, so every access record of web1 from here on is one of ours.
    stack.ok(&["pause", "lb1"]);
    let dropped_before = agent_metric(
        op,
        web1,
        "webstack_agent_dropped_records_total",
        &["kind=\"access\""],
    );
    stack.ok(&["pause", "monitor"]);
    send(
        op,
        stack,
        &format!("http://{web1}:8080/static/style.css"),
        "outage",
        OUTAGE_REQUESTS,
    );
    // The agent holds what fits; the rest it refused and counted.
    let dropped = agent_metric(
        op,
        web1,
        "webstack_agent_dropped_records_total",
        &["kind=\"access\""],
    ) - dropped_before;
    assert!(
        dropped > 0.0,
        "{OUTAGE_REQUESTS} requests should overflow a buffer of {WEB1_BUFFER}"
    );
    // Stay frozen until the agent gives up on a batch (5 s without an answer): the frozen
    // collector still reads that batch when it thaws, and the agent sends it again.
    eventually(
        Duration::from_secs(30),
        "web1's agent gives up waiting",
        || {
            stack
                .ok(&["logs", "web1", "--grep", "cannot take records"])
                .contains("no answer within 5 s")
                .then_some(())
        },
    );
    stack.ok(&["resume", "monitor"]);
    stack.ok(&["resume", "lb1"]);

    let held = eventually(
        Duration::from_secs(60),
        "web1's backlog is delivered",
        || {
            let buffered = agent_metric(op, web1, "webstack_agent_buffered_records", &[]);
            if buffered > 10.0 {
                return None;
            }
            let logs = json(
                op,
                &format!("{collector}/api/logs?server=web1&limit=100000"),
            );
            let mut counts: HashMap<String, usize> = HashMap::new();
            for l in logs.as_array()? {
                if let Some(id) = l["request_id"]
                    .as_str()
                    .filter(|id| id.starts_with("outage-"))
                {
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
            Some(counts)
        },
    );
    // Exactly once: batches the frozen collector read late were sent again, and dropped.
    assert!(
        held.values().all(|n| *n == 1),
        "duplicates: {:?}",
        held.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // The buffer drops the newest: what is held is the first ones, in full.
    let present = held.len();
    assert!(
        (0..present).all(|i| held.contains_key(&format!("outage-{i}"))),
        "held {present}, not a prefix"
    );
    assert!(present > 0 && present <= WEB1_BUFFER, "{present}");
    // And the drop counter says exactly how many are missing.
    assert_eq!(
        dropped as usize,
        OUTAGE_REQUESTS - present,
        "held {present} of {OUTAGE_REQUESTS}"
    );
    let agents = json(op, &format!("{collector}/api/agents"));
    let web1_state = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["server"] == "web1")
        .unwrap();
    eprintln!("web1 at the collector after the outage: {web1_state}");
    let log = stack.ok(&["logs", "web1", "--grep", "is back"]);
    assert!(
        log.contains("buffered records at up to 20000 a second"),
        "{log}"
    );
}

fn dashboard(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--timeout=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium runs (apt-get install chromium)");
    let mut guard = Killed(child);
    let mut out = String::new();
    use std::io::Read;
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn a_dead_server_alerts_notifies_and_shows_down(
    stack: &Stack,
    op: IpAddr,
    collector: &str,
    notify: &Path,
) {
    // The dashboard, in a real browser, from this host: every server of the design.
    let page = dashboard(&format!("{collector}/"));
    for server in ["lb1", "web1", "app1", "db1", "monitor"] {
        assert!(
            page.contains(&format!("data-server=\"{server}\" data-health=\"up\"")),
            "{server} up: {page}"
        );
    }
    // Killed while the collector is away, web1's agent loses what it held; its next run
    // says how much (from the counts the agent saves every 100 ms).
    stack.ok(&["pause", "monitor"]);
    let web1 = stack.host(11);
    send(
        op,
        stack,
        &format!("http://{web1}:8080/static/style.css"),
        "crash",
        50,
    );
    let saved = stack
        .state_dir()
        .join(format!("stacks/{}/servers/web1/agent.json", stack.name));
    let unacknowledged = eventually(
        Duration::from_secs(10),
        "web1's agent saved 50 unacknowledged records",
        || {
            let v: Value = serde_json::from_slice(&std::fs::read(&saved).ok()?).ok()?;
            let n = v["taken"].as_u64()? - v["acked"].as_u64()?;
            (n >= 50).then_some(n)
        },
    );
    stack.ok(&["kill", "web1"]);
    stack.ok(&["resume", "monitor"]);
    eventually(Duration::from_secs(15), "ServerDown fires for web1", || {
        let alerts = json(op, &format!("{collector}/api/alerts"));
        alerts
            .as_array()?
            .iter()
            .any(|a| {
                a["name"] == "ServerDown"
                    && a["state"] == "firing"
                    && a["labels"]["server"] == "web1"
            })
            .then_some(())
    });
    eventually(
        Duration::from_secs(15),
        "notify ran for the firing alert",
        || {
            let text = std::fs::read_to_string(notify).ok()?;
            text.contains("ServerDown firing server=web1").then_some(())
        },
    );
    let alerts = stack.ok(&["alerts"]);
    assert!(
        alerts.contains("FIRING") && alerts.contains("ServerDown"),
        "{alerts}"
    );
    let status = stack.run(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Alerts firing") && status.contains("ServerDown"),
        "status names the alerts: {status}"
    );
    eventually(
        Duration::from_secs(20),
        "the dashboard shows web1 down",
        || {
            dashboard(&format!("{collector}/"))
                .contains("data-server=\"web1\" data-health=\"down\"")
                .then_some(())
        },
    );
    stack.ok(&["start", "web1"]);
    eventually(Duration::from_secs(20), "ServerDown resolves", || {
        let text = std::fs::read_to_string(notify).ok()?;
        text.contains("ServerDown resolved server=web1")
            .then_some(())
    });
    let found = stack.ok(&["logs", "--grep", "ServerDown resolved"]);
    assert!(found.lines().any(|l| l.starts_with("monitor: ")), "{found}");
    let said = stack.ok(&["logs", "web1", "--grep", "previous run ended with"]);
    let lost: u64 = said
        .split("ended with ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("web1's new run says what it lost: {said}"));
    assert!(
        lost >= unacknowledged,
        "lost {lost}, saved {unacknowledged}"
    );
    eventually(
        Duration::from_secs(10),
        "the collector shows the loss",
        || {
            let agents = json(op, &format!("{collector}/api/agents"));
            let web1 = agents
                .as_array()?
                .iter()
                .find(|a| a["server"] == "web1")?
                .clone();
            (web1["lost_at_restart"] == lost).then_some(())
        },
    );
}

/// `count` GETs of `url` from `source` on one keep-alive connection, with request ids
/// `PREFIX-0`, `PREFIX-1`, ….
fn send(source: IpAddr, stack: &Stack, url: &str, prefix: &str, count: usize) {
    let config: Vec<String> = (0..count)
        .map(|i| format!("url = \"{url}\"\ninterface = \"{source}\"\nheader = \"X-Request-Id: {prefix}-{i}\"\noutput = \"/dev/null\"\n"))
        .collect();
    let path = stack.state_dir().join(format!("{prefix}.curl"));
    std::fs::write(&path, config.join("next\n")).unwrap();
    let (ok, out) = curl(source, &["--config", path.to_str().unwrap()]);
    assert!(ok, "{out}");
}

fn a_502_has_a_trace_naming_every_hop(stack: &Stack, op: IpAddr) {
    stack.ok(&["kill", "app1"]);
    let lb1 = stack.host(10);
    let id = eventually(Duration::from_secs(15), "a 502 through lb1", || {
        let (_, head) = curl(
            op,
            &[
                "-o",
                "/dev/null",
                "-D",
                "-",
                &format!("http://{lb1}:8080/api/messages"),
            ],
        );
        head.starts_with("HTTP/1.1 502").then_some(())?;
        head.lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .map(|s| s.trim().to_string())
    });
    let trace = eventually(
        Duration::from_secs(15),
        "both hops' spans reach the collector",
        || {
            let out = stack.run(&["trace", &id]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success()
                && text.contains("lb1 load_balancer")
                && text.contains("web1 web"))
            .then_some(text)
        },
    );
    let lines: Vec<&str> = trace.lines().collect();
    assert!(
        lines[0].contains(&id) && lines[0].contains("502"),
        "{trace}"
    );
    assert!(
        lines[1]
            .trim_start()
            .starts_with("lb1 load_balancer GET /api/messages → 502"),
        "{trace}"
    );
    assert!(
        lines[2]
            .trim_start()
            .starts_with("web1 web GET /api/messages → 502"),
        "{trace}"
    );
    assert!(
        trace.contains("(app of app1)") && trace.contains("could not reach any app server"),
        "{trace}"
    );
    stack.ok(&["start", "app1"]);
}
