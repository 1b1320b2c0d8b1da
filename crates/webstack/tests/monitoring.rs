//! The monitoring agents of the secured design, scraped by a real Prometheus (Debian's),
//! started by this test: every agent is up, and per-process series (mariadbd's memory on
//! both database servers, the nodes' CPU), HTTP requests by route template and their
//! latency histogram are queried back over Prometheus's HTTP API.
//! Prometheus scrapes from 127.0.0.1, which the firewall refuses unless the design says
//! so: the test's design adds that allow rule, as an operator would.

use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use webstack_test_support::http::get;
use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

struct Prometheus {
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/secured.toml"
    ))
    .unwrap();
    let design = source.replace(
        "[servers.lb1.firewall]\n",
        "[servers.lb1.firewall]\nallow = [{ from = \"127.0.0.1\", port = 9100 }]\n",
    );
    let design = design
        .replace(
            "[servers.server1.firewall]\n",
            "[servers.server1.firewall]\nallow = [{ from = \"127.0.0.1\", port = 9100 }]\n",
        )
        .replace(
            "[servers.server2.firewall]\n",
            "[servers.server2.firewall]\nallow = [{ from = \"127.0.0.1\", port = 9100 }]\n",
        );
    assert_eq!(design.matches("from = \"127.0.0.1\"").count(), 3);
    let path = dir.path().join("secured-scraped.toml");
    std::fs::write(&path, design).unwrap();
    let stack = Stack::up(BIN.as_ref(), path.to_str().unwrap());

    let targets: Vec<String> = [10, 11, 12]
        .iter()
        .map(|n| format!("\"{}:9100\"", stack.host(*n)))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: webstack\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let listen: IpAddr = stack.host(251);
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}:9090"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus runs (apt-get install prometheus)");
    let _prometheus = Prometheus { child };
    eventually(Duration::from_secs(30), "prometheus listens", || {
        TcpStream::connect((listen, 9090)).ok().map(|_| ())
    });
    let query = |q: &str| -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent(q));
        let r = get(std::net::SocketAddr::new(listen, 9090), "prometheus", &path);
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    eventually(
        Duration::from_secs(60),
        "every agent is scraped and up",
        || {
            let up = query("up{job=\"webstack\"} == 1");
            (up.len() == 3).then_some(())
        },
    );
    let mariadbd = eventually(
        Duration::from_secs(30),
        "mariadbd's memory on both database servers",
        || {
            let r = query("webstack_process_resident_memory_bytes{process=\"mariadbd\"}");
            (r.len() == 2).then_some(r)
        },
    );
    for series in &mariadbd {
        let bytes: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        assert!(bytes > 10e6, "{series}");
    }
    let servers: Vec<&str> = mariadbd
        .iter()
        .filter_map(|s| s["metric"]["server"].as_str())
        .collect();
    assert!(
        servers.contains(&"server1") && servers.contains(&"server2"),
        "{servers:?}"
    );
    let cpu = query("webstack_process_cpu_seconds_total{process=\"node\"}");
    assert_eq!(cpu.len(), 3, "{cpu:?}");
    // HTTP metrics by route template: 20 requests through the site, over HTTPS.
    let ca = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.crt", stack.name));
    for _ in 0..20 {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("www.foobar.com:8443:{}", stack.host(10)),
            ])
            .arg("https://www.foobar.com:8443/api/messages")
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    eventually(
        Duration::from_secs(30),
        "20 proxied requests counted at lb1",
        || {
            let r = query("sum(webstack_http_requests_total{server=\"lb1\",component=\"load_balancer\",route=\"proxied\",status=\"2xx\"})");
            let n: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
            (n >= 20.0).then_some(())
        },
    );
    // The web servers' agents are scraped on their own schedule: eventually they agree.
    eventually(
        Duration::from_secs(30),
        "the web servers proxied the 20 to their apps",
        || {
            let web = query(
                "sum(webstack_http_requests_total{component=\"web\",route=\"app\",method=\"GET\"})",
            );
            let n: f64 = web.first()?["value"][1].as_str()?.parse().ok()?;
            (n >= 20.0).then_some(())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the app servers answered them on their route",
        || {
            let app = query(
                "sum(webstack_http_requests_total{component=\"app\",route=\"/api/messages\",status=\"2xx\"})",
            );
            let n: f64 = app.first()?["value"][1].as_str()?.parse().ok()?;
            (n >= 20.0).then_some(())
        },
    );
    eventually(
        Duration::from_secs(30),
        "a p99 from the latency histogram",
        || {
            let p99 = query("histogram_quantile(0.99, sum by (le) (rate(webstack_http_request_duration_seconds_bucket{component=\"web\"}[1m])))");
            let v: f64 = p99.first()?["value"][1].as_str()?.parse().ok()?;
            (v > 0.0).then_some(())
        },
    );

    let expiry = query("webstack_tls_certificate_expiry_seconds{server=\"lb1\"}");
    let seconds: f64 = expiry[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(seconds > 3600.0 && seconds <= 12.0 * 3600.0, "{expiry:?}");
}

fn percent(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
