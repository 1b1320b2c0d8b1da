//! The load balancer on loopback ports in front of real HTTP backends: algorithms, health
//! checks, retries, admin states, limits, request framing, PROXY protocol.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Response, StatusCode};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use webstack_net::http::{full, serve, HttpLimits};
use webstack_net::Listener;
use webstack_test_support::eventually;
use webstack_test_support::http::{get, raw_request, request};
use webstack_topology::{Algorithm, HealthCheck, LbMode, LbTimeouts, WhenAllDown};

use crate::*;

/// One runtime for every server a test starts; shut down with the test.
struct Lab {
    rt: tokio::runtime::Runtime,
    stops: Vec<CancellationToken>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &self.stops {
            s.cancel();
        }
    }
}

/// A backend that names itself in `X-Served-By`, counts what it receives, can be made
/// unhealthy, and holds `/hang` requests until the test releases them.
struct TestBackend {
    addr: SocketAddr,
    stop: CancellationToken,
    received: Arc<AtomicU32>,
    posts: Arc<AtomicU32>,
    healthy: Arc<AtomicBool>,
    release: Arc<Semaphore>,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            stops: Vec::new(),
        }
    }

    fn backend(&mut self, name: &'static str) -> TestBackend {
        self.backend_on(name, "127.0.0.1:0".parse().unwrap())
    }

    fn backend_on(&mut self, name: &'static str, addr: SocketAddr) -> TestBackend {
        let listener = self.rt.block_on(async { Listener::bind(addr).unwrap() });
        let addr = listener.local_addr();
        let stop = CancellationToken::new();
        let (received, posts, healthy, release) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicBool::new(true)),
            Arc::new(Semaphore::new(0)),
        );
        let (r, p, h, rel) = (
            received.clone(),
            posts.clone(),
            healthy.clone(),
            release.clone(),
        );
        self.rt.spawn(serve(
            listener,
            HttpLimits::default(),
            stop.clone(),
            move |req, _| {
                let (r, p, h, rel) = (r.clone(), p.clone(), h.clone(), rel.clone());
                async move {
                    if req.uri().path() == "/.webstack/health" {
                        let status = if h.load(Ordering::SeqCst) {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        };
                        return Response::builder().status(status).body(full("")).unwrap();
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    if req.method() == hyper::Method::POST {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    if req.uri().path() == "/hang" {
                        let _permit = rel.acquire().await;
                    }
                    let body = http_body_util::BodyExt::collect(req.into_body())
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Response::builder()
                        .header("x-served-by", name)
                        .body(full(format!("{name} got {} bytes", body.len())))
                        .unwrap()
                }
            },
        ));
        self.stops.push(stop.clone());
        TestBackend {
            addr,
            stop,
            received,
            posts,
            healthy,
            release,
        }
    }

    fn lb(
        &mut self,
        backends: &[(&str, &TestBackend)],
        tweak: impl FnOnce(&mut LbConfig),
    ) -> (SocketAddr, SocketAddr) {
        let mut config = LbConfig {
            server_name: "lb-test".into(),
            local_address: "127.0.0.1".parse().unwrap(),
            mode: LbMode::Http,
            algorithm: Algorithm::RoundRobin,
            backends: backends
                .iter()
                .map(|(name, b)| BackendConfig {
                    name: name.to_string(),
                    addr: b.addr,
                    tls_addr: None,
                    weight: 1,
                    backup: false,
                })
                .collect(),
            maxconn: None,
            retries: 3,
            when_all_down: WhenAllDown::ServiceUnavailable,
            proxy_protocol: false,
            health_check: HealthCheck {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(100),
                rise: 2,
                fall: 2,
                path: "/.webstack/health".into(),
                expect_status: 200,
            },
            timeouts: LbTimeouts {
                connect: Duration::from_secs(1),
                server: Duration::from_secs(5),
                client: Duration::from_secs(5),
                queue: Duration::from_millis(300),
            },
            backend_roots: Vec::new(),
            metrics: None,
            on_pool: None,
            previous: None,
        };
        tweak(&mut config);
        let (listener, stats) = self.rt.block_on(async {
            (
                Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
                Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            )
        });
        let (addr, stats_addr) = (listener.local_addr(), stats.local_addr());
        let stop = CancellationToken::new();
        self.rt
            .spawn(run(config, listener, None, stats, stop.clone()));
        self.stops.push(stop);
        (addr, stats_addr)
    }
}

fn served_by(lb: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            get(lb, "www.foobar.com", "/")
                .header("x-served-by")
                .unwrap_or("none")
                .to_string()
        })
        .collect()
}

fn count(v: &[String], name: &str) -> usize {
    v.iter().filter(|s| *s == name).count()
}

fn backend_state(stats: SocketAddr, name: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&get(stats, "lb", "/backends.json").body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn round_robin_gives_exactly_equal_shares_over_two_and_three_backends() {
    let mut lab = Lab::new();
    let (a, b, c) = (lab.backend("a"), lab.backend("b"), lab.backend("c"));
    let (two, _) = lab.lb(&[("a", &a), ("b", &b)], |_| {});
    let got = served_by(two, 100);
    assert_eq!((count(&got, "a"), count(&got, "b")), (50, 50));
    let (three, _) = lab.lb(&[("a", &a), ("b", &b), ("c", &c)], |_| {});
    let got = served_by(three, 99);
    assert_eq!(
        (count(&got, "a"), count(&got, "b"), count(&got, "c")),
        (33, 33, 33)
    );
}

#[test]
fn weights_are_respected() {
    let mut lab = Lab::new();
    let (a, b) = (lab.backend("a"), lab.backend("b"));
    let (lb, _) = lab.lb(&[("a", &a), ("b", &b)], |c| {
        c.algorithm = Algorithm::Weighted;
        c.backends[0].weight = 3;
    });
    let got = served_by(lb, 100);
    assert_eq!((count(&got, "a"), count(&got, "b")), (75, 25));
}

#[test]
fn leastconn_prefers_the_idle_backend() {
    let mut lab = Lab::new();
    let (a, b) = (lab.backend("a"), lab.backend("b"));
    let (lb, _) = lab.lb(&[("a", &a), ("b", &b)], |c| {
        c.algorithm = Algorithm::LeastConn
    });
    // Two requests held open on one backend make the other the idle one.
    let hold1 = std::thread::spawn(move || get(lb, "h", "/hang"));
    eventually(
        Duration::from_secs(5),
        "the first held request arrives",
        || {
            (a.received.load(Ordering::SeqCst) + b.received.load(Ordering::SeqCst) == 1)
                .then_some(())
        },
    );
    let busy = if a.received.load(Ordering::SeqCst) == 1 {
        "a"
    } else {
        "b"
    };
    let got = served_by(lb, 10);
    assert_eq!(
        count(&got, busy),
        0,
        "leastconn sent requests to the busy backend: {got:?}"
    );
    a.release.add_permits(10);
    b.release.add_permits(10);
    assert_eq!(hold1.join().unwrap().status, 200);
}

#[test]
fn dead_backend_costs_no_request_is_marked_down_and_rejoins() {
    let mut lab = Lab::new();
    let (a, b) = (lab.backend("a"), lab.backend("b"));
    let (lb, stats) = lab.lb(&[("a", &a), ("b", &b)], |_| {});
    assert_eq!(served_by(lb, 4).len(), 4);
    let b_addr = b.addr;
    b.stop.cancel();
    eventually(Duration::from_secs(5), "b stops listening", || {
        std::net::TcpStream::connect(b_addr).is_err().then_some(())
    });
    let got = served_by(lb, 20);
    // A stopping server still answers one more request on each connection it had kept
    // alive (with `Connection: close`), so b may answer as many as it had connections
    // from the first four; every other request goes to a, and none fails.
    assert_eq!(
        count(&got, "a") + count(&got, "b"),
        20,
        "every request must be answered: {got:?}"
    );
    assert!(
        count(&got, "b") <= 4,
        "b took new requests after it stopped: {got:?}"
    );
    let down = eventually(Duration::from_secs(5), "b is marked down", || {
        let s = backend_state(stats, "b");
        (s["up"] == false).then_some(s)
    });
    assert!(down["went_down"].as_u64().unwrap() >= 1);
    let metrics = get(stats, "lb", "/metrics").text();
    assert!(
        metrics.contains("webstack_lb_backend_up{backend=\"b\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webstack_lb_backend_errors_total{backend=\"b\",kind=\"connect\"}"),
        "{metrics}"
    );

    // Back on the same port: after `rise` passed checks it takes traffic again.
    let _b2 = lab.backend_on("b", b_addr);
    eventually(Duration::from_secs(5), "b rejoins", || {
        (backend_state(stats, "b")["up"] == true).then_some(())
    });
    let got = served_by(lb, 10);
    assert_eq!(count(&got, "b"), 5, "{got:?}");
}

#[test]
fn failing_health_check_takes_a_backend_out_within_fall_intervals() {
    let mut lab = Lab::new();
    let (a, b) = (lab.backend("a"), lab.backend("b"));
    let (lb, stats) = lab.lb(&[("a", &a), ("b", &b)], |_| {});
    b.healthy.store(false, Ordering::SeqCst);
    let s = eventually(Duration::from_secs(5), "b fails its checks", || {
        let s = backend_state(stats, "b");
        (s["up"] == false).then_some(s)
    });
    assert!(s["last_check"].as_str().unwrap().contains("503"), "{s}");
    assert_eq!(count(&served_by(lb, 10), "a"), 10);
}

#[test]
fn drain_lets_in_flight_requests_finish_and_sends_no_new_ones() {
    let mut lab = Lab::new();
    let (a, b) = (lab.backend("a"), lab.backend("b"));
    let (lb, stats) = lab.lb(&[("a", &a), ("b", &b)], |_| {});
    // The first request of a fresh round robin goes to a; hold it there.
    let held = std::thread::spawn(move || get(lb, "h", "/hang"));
    eventually(Duration::from_secs(5), "the held request reaches a", || {
        (a.received.load(Ordering::SeqCst) == 1).then_some(())
    });
    let set = request(stats, "POST", "lb", "/backends/a/state", &[], b"drain");
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(backend_state(stats, "a")["admin"], "drain");
    let got = served_by(lb, 10);
    assert_eq!(count(&got, "b"), 10, "{got:?}");
    a.release.add_permits(1);
    let finished = held.join().unwrap();
    assert_eq!(
        (finished.status, finished.header("x-served-by")),
        (200, Some("a"))
    );
    assert_eq!(
        request(stats, "POST", "lb", "/backends/a/state", &[], b"ready").status,
        200
    );
    assert_eq!(count(&served_by(lb, 10), "a"), 5);
    assert_eq!(
        request(stats, "POST", "lb", "/backends/zz/state", &[], b"ready").status,
        404
    );
    assert_eq!(
        request(stats, "POST", "lb", "/backends/a/state", &[], b"sleepy").status,
        400
    );
}

#[test]
fn post_is_never_sent_twice_but_get_is_retried_after_a_reset() {
    let mut lab = Lab::new();
    let good = lab.backend("good");
    // A backend that reads the request and closes the connection without answering.
    let rude = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rude_addr = rude.local_addr().unwrap();
    let rude_seen = Arc::new(AtomicU32::new(0));
    let seen = rude_seen.clone();
    std::thread::spawn(move || {
        for stream in rude.incoming().flatten() {
            use std::io::Read;
            let mut s = stream;
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("POST") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let rude_backend = TestBackend {
        addr: rude_addr,
        stop: CancellationToken::new(),
        received: Arc::default(),
        posts: Arc::default(),
        healthy: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
    };
    let (lb, _) = lab.lb(&[("rude", &rude_backend), ("good", &good)], |c| {
        c.health_check.interval = Duration::from_secs(60)
    });
    let post = request(
        lb,
        "POST",
        "h",
        "/api/messages",
        &[("Content-Type", "application/json")],
        br#"{"message":"once"}"#,
    );
    assert_eq!(post.status, 502, "{}", post.text());
    assert!(post.text().contains("not retried"), "{}", post.text());
    assert_eq!(
        rude_seen.load(Ordering::SeqCst) + good.posts.load(Ordering::SeqCst),
        1,
        "the POST reached a backend more than once"
    );
    let got = get(lb, "h", "/");
    assert_eq!(
        (got.status, got.header("x-served-by")),
        (200, Some("good")),
        "a GET after a reset goes to another backend"
    );
}

#[test]
fn no_backend_up_is_a_503_or_fail_open() {
    let mut lab = Lab::new();
    let a = lab.backend("a");
    a.healthy.store(false, Ordering::SeqCst);
    let (strict, strict_stats) = lab.lb(&[("a", &a)], |_| {});
    let (open, open_stats) = lab.lb(&[("a", &a)], |c| c.when_all_down = WhenAllDown::FailOpen);
    for stats in [strict_stats, open_stats] {
        eventually(Duration::from_secs(5), "a is down", || {
            (backend_state(stats, "a")["up"] == false).then_some(())
        });
    }
    let refused = get(strict, "h", "/");
    assert_eq!(refused.status, 503);
    assert!(refused.text().contains("no backend"), "{}", refused.text());
    assert_eq!(get(open, "h", "/").header("x-served-by"), Some("a"));
}

#[test]
fn maxconn_queues_and_times_out_with_a_503() {
    let mut lab = Lab::new();
    let a = lab.backend("a");
    let (lb, _) = lab.lb(&[("a", &a)], |c| c.maxconn = Some(1));
    let held = std::thread::spawn(move || get(lb, "h", "/hang"));
    eventually(Duration::from_secs(5), "the held request arrives", || {
        (a.received.load(Ordering::SeqCst) == 1).then_some(())
    });
    let queued = get(lb, "h", "/");
    assert_eq!(queued.status, 503);
    assert!(
        queued.text().contains("connection limit"),
        "{}",
        queued.text()
    );
    a.release.add_permits(1);
    assert_eq!(held.join().unwrap().status, 200);
    // A queued request is served as soon as the backend frees up.
    let held = std::thread::spawn(move || get(lb, "h", "/hang"));
    eventually(
        Duration::from_secs(5),
        "the second held request arrives",
        || (a.received.load(Ordering::SeqCst) == 2).then_some(()),
    );
    let waiting = std::thread::spawn(move || get(lb, "h", "/"));
    a.release.add_permits(1);
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(waiting.join().unwrap().status, 200);
}

#[test]
fn ambiguous_or_broken_framing_is_never_forwarded_ambiguously() {
    let mut lab = Lab::new();
    let a = lab.backend("a");
    let (lb, _) = lab.lb(&[("a", &a)], |_| {});
    // Content-Length and Transfer-Encoding both: the chunked framing wins, Content-Length
    // is dropped, the connection closes (RFC 9112 6.3, as HAProxy does); the bytes after
    // the chunked body never become a second request.
    let smuggle = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let r = raw_request(lb, smuggle);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "a got 5 bytes");
    assert_eq!(
        a.received.load(Ordering::SeqCst),
        1,
        "the smuggled request reached the backend"
    );

    for (what, raw) in [
        ("two different Content-Lengths", &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"[..]),
        ("a bad chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("a transfer coding other than chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nhello"),
        ("a negative Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\nConnection: close\r\n\r\nhello"),
    ] {
        let r = raw_request(lb, raw);
        assert_eq!(r.status, 400, "{what}: {} {}", r.status, r.text());
    }
    assert_eq!(
        a.received.load(Ordering::SeqCst),
        1,
        "a malformed request reached the backend"
    );
}

#[test]
fn forwarding_headers_and_request_id() {
    let mut lab = Lab::new();
    let a = lab.backend("a");
    let (lb, _) = lab.lb(&[("a", &a)], |_| {});
    let r = request(
        lb,
        "GET",
        "www.foobar.com",
        "/",
        &[("X-Request-Id", "trace-7")],
        b"",
    );
    assert_eq!(r.header("x-request-id"), Some("trace-7"));
    let fresh = get(lb, "h", "/");
    assert_eq!(fresh.header("x-request-id").map(str::len), Some(32));
}

#[test]
fn tcp_mode_sends_a_proxy_v2_header_first() {
    let mut lab = Lab::new();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = backend.local_addr().unwrap();
    let got = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = backend.accept().unwrap();
        let mut header = [0u8; 28];
        s.read_exact(&mut header).unwrap();
        let mut ping = [0u8; 4];
        s.read_exact(&mut ping).unwrap();
        s.write_all(b"pong").unwrap();
        (header, ping)
    });
    let fake = TestBackend {
        addr,
        stop: CancellationToken::new(),
        received: Arc::default(),
        posts: Arc::default(),
        healthy: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
    };
    let (lb, _) = lab.lb(&[("t", &fake)], |c| {
        c.mode = LbMode::Tcp;
        c.proxy_protocol = true;
        c.health_check.interval = Duration::from_secs(60);
    });
    use std::io::{Read, Write};
    let mut client = std::net::TcpStream::connect(lb).unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    client.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    let (header, ping) = got.join().unwrap();
    assert_eq!(&ping, b"ping");
    assert_eq!(header[12..14], [0x21, 0x11]);
    assert_eq!(u16::from_be_bytes([header[24], header[25]]), client_port);
    assert_eq!(u16::from_be_bytes([header[26], header[27]]), lb.port());
}

#[test]
fn stats_page_lists_backends() {
    let mut lab = Lab::new();
    let a = lab.backend("a");
    let (_, stats) = lab.lb(&[("a", &a)], |_| {});
    let page = get(stats, "lb", "/");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<td>a</td>") && page.text().contains("UP"),
        "{}",
        page.text()
    );
}
