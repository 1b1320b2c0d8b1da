//! The floating IP of an active-passive load balancer pair, on stacks of the real binary:
//! lb1 (priority 150) and lb2 (100) share `vip`, with 100 ms heartbeats; each balances to
//! a web server of its own (lb1 → web1, lb2 → web2), both in front of one app server.
//!
//! Throughout, a sampler reads /proc/net/tcp every 10 ms and fails the test if two
//! sockets ever listen on the floating address's port, or if both members ever report
//! holding it.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use std::path::Path;

use webstack_test_support::{alive, eventually, listening_sockets_on, Load, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");
/// 3 × 100 ms + (256 − 100) × 100 ms / 256, lb2's Master_Down_Interval.
const TAKEOVER_BOUND: Duration = Duration::from_nanos(360_937_500);

fn design(extra: &str) -> String {
    format!(
        r#"[stack]
name = "pair"
domain = "foobar.com"

[dns]
address = "127.10.9.2"
port = 5353
records = {{ www = ["vip"] }}

[codebase]
builtin = "foobar"

[floating_ips.vip]
address = "127.10.9.100"
servers = ["lb1", "lb2"]
interval = "100ms"
priorities = {{ lb1 = 150, lb2 = 100 }}
track_weight = 60
{extra}

[servers.lb1]
address = "127.10.9.10"
load_balancer = {{ port = 8080, backends = ["web1"], health_check = {{ interval_ms = 200, timeout_ms = 200, rise = 1, fall = 1 }} }}

[servers.lb2]
address = "127.10.9.20"
load_balancer = {{ port = 8080, backends = ["web2"], health_check = {{ interval_ms = 200, timeout_ms = 200, rise = 1, fall = 1 }} }}

[servers.web1]
address = "127.10.9.11"
web = {{ port = 8080, upstreams = ["app1"] }}

[servers.web2]
address = "127.10.9.12"
web = {{ port = 8080, upstreams = ["app1"] }}

[servers.app1]
address = "127.10.9.13"
app = {{ port = 8000, storage = "sqlite" }}
"#
    )
}

fn up(extra: &str) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair.toml");
    std::fs::write(&path, design(extra)).unwrap();
    let stack = Stack::up(BIN.as_ref(), path.to_str().unwrap());
    (stack, dir)
}

/// `up` returns once someone holds the address. The members start a few milliseconds
/// apart, so lb2 may win the first election; with preempt, lb1 (the higher priority)
/// then takes the address within a Master_Down_Interval (plus any preempt delay).
fn settled(stack: &Stack) {
    eventually(Duration::from_secs(10), "lb1 holds the address", || {
        (holder(stack) == Some("lb1")).then_some(())
    });
}

/// A live member's view: (state, holding), from its node's status. A killed node's
/// status file stays behind: it says nothing.
fn member_at(servers: &Path, server: &str) -> Option<(String, bool)> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(servers.join(server).join("node.json")).ok()?)
            .ok()?;
    if !alive(v["pid"].as_u64()? as u32) {
        return None;
    }
    let f = &v["floating"];
    Some((f["state"].as_str()?.to_string(), f["holding"].as_bool()?))
}

fn member(stack: &Stack, server: &str) -> Option<(String, bool)> {
    member_at(
        &stack
            .state_dir()
            .join(format!("stacks/{}/servers", stack.name)),
        server,
    )
}

fn holder(stack: &Stack) -> Option<&'static str> {
    ["lb1", "lb2"]
        .into_iter()
        .find(|s| member(stack, s).is_some_and(|(_, holding)| holding))
}

/// Samples every 10 ms; `stop` returns what it saw.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<(Instant, usize)>>>,
}

impl Sampler {
    fn start(stack: &Stack) -> Sampler {
        let vip = stack.host(100);
        let state = stack
            .state_dir()
            .join(format!("stacks/{}/servers", stack.name));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let sockets = listening_sockets_on(vip)
                    .iter()
                    .filter(|a| a.port() == 8080)
                    .count();
                assert!(sockets <= 1, "two sockets listen on {vip}:8080 at once");
                let holding = ["lb1", "lb2"]
                    .iter()
                    .filter(|s| member_at(&state, s).is_some_and(|(_, holding)| holding))
                    .count();
                assert!(holding <= 1, "both members report holding {vip}");
                seen.push((Instant::now(), sockets));
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<(Instant, usize)> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().unwrap().join() {
            Ok(seen) => seen,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `webstack bench` in the background: a client that retries a refused connection once,
/// after 500 ms.
fn load(stack: &Stack, seconds: u32) -> Load {
    stack.load(&[
        "http://www.foobar.com:8080/static/style.css",
        "-c",
        "4",
        "-d",
        &seconds.to_string(),
        "--retry-refused",
        "500",
    ])
}

fn failed(report: &Value) -> u64 {
    Load::failed(report)
}

/// Waits until the load has sent requests through `lb` (its stats count them).
fn wait_for_traffic(stack: &Stack, lb: &str) {
    eventually(
        Duration::from_secs(10),
        "requests flow through the master",
        || {
            let text = stack.ok(&["lb", "status", "--lb", lb]);
            let requests: u64 = text
                .lines()
                .nth(1)?
                .split_whitespace()
                .nth(5)?
                .parse()
                .ok()?;
            (requests > 50).then_some(())
        },
    );
}

#[test]
fn kill_9_of_the_master_moves_the_address_in_time_and_only_in_flight_requests_fail() {
    let (stack, _dir) = up("");
    settled(&stack);
    let sampler = Sampler::start(&stack);
    let load = load(&stack, 4);
    wait_for_traffic(&stack, "lb1");
    let killed = Instant::now();
    stack.ok(&["kill", "lb1"]);
    let dead = Instant::now();
    let took = eventually(Duration::from_secs(5), "lb2 holds the address", || {
        (holder(&stack) == Some("lb2")).then(|| killed.elapsed())
    });
    let report = load.report();
    let seen = sampler.finish();
    // The address was unheld from the moment lb1's socket went (with its process) until
    // lb2 bound it: the gap the sampler saw.
    let gone = seen
        .iter()
        .find(|(t, n)| *t >= killed && *n == 0)
        .map(|(t, _)| *t)
        .expect("lb1's listener went away");
    let back = seen
        .iter()
        .find(|(t, n)| *t > gone && *n == 1)
        .map(|(t, _)| *t)
        .expect("a listener came back on the floating address");
    let gap = back - gone;
    eprintln!(
        "takeover: the address was unheld for {gap:?} (sampled every 10 ms; `webstack kill` took {:?}; lb2 reported holding {took:?} after the kill began); bound 3 × interval + skew = {TAKEOVER_BOUND:?}; load: {report}",
        dead - killed
    );
    // The protocol's bound counts from lb1's last advert (at most an interval before its
    // death), plus 10 ms of sampling. This test runs beside six other stacks on two cores,
    // where a timer can fire late: it allows twice the bound (685 ms was seen once in a
    // full run), and `bench/floating-ip` measures the takeover on a quiet machine (354 ms
    // median against keepalived's 361 ms).
    assert!(
        gap <= TAKEOVER_BOUND * 2 + Duration::from_millis(20),
        "unheld for {gap:?}"
    );
    // Only requests in flight while lb1 died fail: the one each of the 4 connections
    // had, and those of connections that reconnected while the dying process's sockets
    // were still being torn down (seen: 4 to 8 in all). Refused connections were retried
    // once and succeeded.
    assert!(failed(&report) <= 12, "{report}");
    assert_eq!(report["errors"].get("connect"), None, "{report}");
    assert!(report["ok"].as_u64().unwrap() > 100, "{report}");
}

#[test]
fn a_graceful_stop_hands_over_without_a_failed_request_and_preempt_takes_it_back() {
    let hooks = tempfile::tempdir().unwrap();
    let notified = hooks.path().join("notify.log");
    let (stack, _dir) = up(&format!(
        "preempt_delay = \"1s\"\nnotify = [\"sh\", \"-c\", \"echo \\\"$*\\\" >> {}\", \"hook\"]",
        notified.display()
    ));
    settled(&stack);
    let sampler = Sampler::start(&stack);
    let load = load(&stack, 6);
    wait_for_traffic(&stack, "lb1");
    stack.ok(&["stop", "lb1"]);
    eventually(Duration::from_secs(5), "lb2 holds the address", || {
        (holder(&stack) == Some("lb2")).then_some(())
    });
    stack.ok(&["start", "lb1"]);
    let back = Instant::now();
    // Preempt: lb1 outranks lb2 and takes the address back, once its delay has passed.
    let took = eventually(
        Duration::from_secs(10),
        "lb1 takes the address back",
        || (holder(&stack) == Some("lb1")).then(|| back.elapsed()),
    );
    assert!(
        took >= Duration::from_millis(900),
        "the preempt delay held it back: {took:?}"
    );
    let report = load.report();
    sampler.finish();
    assert_eq!(failed(&report), 0, "{report}");
    let status = stack.ok(&["status"]);
    assert!(
        status.contains("floating IP vip") && status.contains("held by lb1"),
        "{status}"
    );
    // keepalived's notify: INSTANCE NAME STATE PRIORITY on every change, in order.
    let hooks = std::fs::read_to_string(&notified).unwrap();
    let lb2_took_over = hooks.find("INSTANCE vip MASTER 100").expect(&hooks);
    let lb1_took_back = hooks.rfind("INSTANCE vip MASTER 150").expect(&hooks);
    assert!(lb2_took_over < lb1_took_back, "{hooks}");
    assert!(hooks.contains("INSTANCE vip BACKUP 100"), "{hooks}");
    let metrics = stack.ok(&["lb", "status"]);
    assert!(metrics.contains("lb1 MASTER priority 150"), "{metrics}");
}

#[test]
fn with_nopreempt_the_old_master_stays_backup() {
    let (stack, _dir) = up("preempt = false");
    let sampler = Sampler::start(&stack);
    let load = load(&stack, 6);
    // Whoever won the first election (without preempt, lb2 may keep it).
    let master = holder(&stack).expect("up waits for a holder");
    wait_for_traffic(&stack, master);
    let other = if master == "lb1" { "lb2" } else { "lb1" };
    stack.ok(&["stop", master]);
    eventually(
        Duration::from_secs(5),
        "the other member holds the address",
        || (holder(&stack) == Some(other)).then_some(()),
    );
    stack.ok(&["start", master]);
    // The returning member hears the holder's adverts for well over its
    // Master_Down_Interval and stays backup, even when it has the higher priority.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(holder(&stack), Some(other));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(member(&stack, master).unwrap().0, "BACKUP");
    let report = load.report();
    sampler.finish();
    assert_eq!(failed(&report), 0, "{report}");
}

#[test]
fn a_paused_master_keeps_the_address_and_no_second_holder_appears() {
    let (stack, _dir) = up("");
    settled(&stack);
    let sampler = Sampler::start(&stack);
    stack.ok(&["pause", "lb1"]);
    // lb2 hears nothing, becomes master, and finds the address's port still bound by the
    // frozen lb1: it holds nothing (the kernel lets one socket bind it).
    eventually(Duration::from_secs(5), "lb2 becomes master", || {
        (member(&stack, "lb2")?.0 == "MASTER").then_some(())
    });
    let log = eventually(
        Duration::from_secs(5),
        "lb2 says the address is held",
        || {
            let log = stack.ok(&["logs", "lb2", "--grep", "still held elsewhere"]);
            (!log.is_empty()).then_some(log)
        },
    );
    assert!(log.contains("trying every 5ms"), "{log}");
    assert!(!member(&stack, "lb2").unwrap().1, "lb2 holds nothing");
    stack.ok(&["resume", "lb1"]);
    // lb1 answers lb2's adverts with its higher priority; lb2 steps down.
    eventually(Duration::from_secs(5), "lb2 backs off", || {
        (member(&stack, "lb2")?.0 == "BACKUP").then_some(())
    });
    assert_eq!(holder(&stack), Some("lb1"));
    sampler.finish();
}

#[test]
fn a_master_whose_backends_are_all_down_hands_over() {
    let (stack, _dir) = up("");
    settled(&stack);
    stack.ok(&["kill", "web1"]);
    // lb1's priority drops by its track weight, 150 − 60 = 90, under lb2's 100.
    eventually(Duration::from_secs(10), "lb2 holds the address", || {
        (holder(&stack) == Some("lb2")).then_some(())
    });
    let status = stack.ok(&["lb", "status"]);
    assert!(
        status.contains("priority 90 (of 150: its backends are down)"),
        "{status}"
    );
}

fn heartbeat(stack: &Stack, from: IpAddr, priority: u8, sent_us: u64, secret: &[u8]) {
    let h = webstack_vrrp::Heartbeat {
        group: "vip".into(),
        from,
        priority,
        interval_ms: 0,
        sent_us,
    };
    // Sent from the address it names (another port of lb1's address), to lb2.
    let socket = std::net::UdpSocket::bind((from, 0)).unwrap();
    socket
        .send_to(&webstack_vrrp::encode(&h, secret), (stack.host(20), 5112))
        .unwrap();
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn a_strangers_or_replayed_heartbeat_changes_nothing() {
    let (stack, _dir) = up("");
    settled(&stack);
    let secret = std::fs::read_to_string(
        stack
            .state_dir()
            .join(format!("stacks/{}/secrets/heartbeat.secret", stack.name)),
    )
    .unwrap();
    let secret = secret.trim().as_bytes();
    let lb1 = stack.host(10);
    let transitions = |s: &Stack| -> u64 {
        let v: Value = serde_json::from_slice(
            &std::fs::read(
                s.state_dir()
                    .join(format!("stacks/{}/servers/lb2/node.json", s.name)),
            )
            .unwrap(),
        )
        .unwrap();
        v["floating"]["transitions"].as_u64().unwrap()
    };
    let before = transitions(&stack);
    // "lb1 is leaving" (priority 0) would hand the address to lb2 at once, if believed.
    heartbeat(&stack, lb1, 0, now_us(), b"not this stack's secret");
    heartbeat(&stack, lb1, 0, now_us() - 500_000, secret); // older than lb1's last beat
    heartbeat(&stack, lb1, 0, now_us() - 5_000_000, secret); // an old recording
    let log = eventually(Duration::from_secs(5), "lb2 logs all three", || {
        let log = stack.ok(&["logs", "lb2", "--grep", "ignored a heartbeat"]);
        (log.lines().count() >= 3).then_some(log)
    });
    assert!(log.contains("not signed with this stack's secret"), "{log}");
    assert!(log.contains("(a replay)"), "{log}");
    assert!(log.contains("sent more than 2 s away from now"), "{log}");
    assert_eq!(transitions(&stack), before, "lb2 did not move");
    assert_eq!(holder(&stack), Some("lb1"));
    // The control: the same heartbeat, signed and fresh, is believed. lb1's own adverts
    // (every 100 ms) keep resetting lb2's timer, so the test sends it every 20 ms for a
    // while: lb2 then takes over after its skew (61 ms), and lb1, alive and outranking
    // it, answers and keeps the address.
    eventually(
        Duration::from_secs(5),
        "lb2 acted on the authentic heartbeat",
        || {
            heartbeat(&stack, lb1, 0, now_us(), secret);
            std::thread::sleep(Duration::from_millis(20));
            (transitions(&stack) > before).then_some(())
        },
    );
    eventually(
        Duration::from_secs(5),
        "lb1 still holds the address",
        || (holder(&stack) == Some("lb1") && member(&stack, "lb2")?.0 == "BACKUP").then_some(()),
    );
}

#[test]
fn active_active_names_both_balancers_and_survives_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair2.toml");
    let src = design("")
        .replace("records = { www = [\"vip\"] }", "records = { www = [\"lb1\", \"lb2\"] }")
        .replace(
            "[floating_ips.vip]\naddress = \"127.10.9.100\"\nservers = [\"lb1\", \"lb2\"]\ninterval = \"100ms\"\npriorities = { lb1 = 150, lb2 = 100 }\ntrack_weight = 60\n",
            "",
        );
    assert!(!src.contains("floating_ips"), "{src}");
    std::fs::write(&path, src).unwrap();
    let stack = Stack::up(BIN.as_ref(), path.to_str().unwrap());
    let dig = Command::new("dig")
        .args([
            "+short",
            "-p",
            "5353",
            &format!("@{}", stack.host(2)),
            "www.foobar.com",
            "A",
        ])
        .output()
        .unwrap();
    let mut answers: Vec<String> = String::from_utf8_lossy(&dig.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    answers.sort();
    assert_eq!(
        answers,
        [stack.host(10).to_string(), stack.host(20).to_string()]
    );
    stack.ok(&["kill", "lb1"]);
    // A client with both addresses (curl tries the next when one refuses) keeps working.
    let resolve = format!("www.foobar.com:8080:{},{}", stack.host(10), stack.host(20));
    for _ in 0..10 {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--resolve",
                &resolve,
            ])
            .arg("http://www.foobar.com:8080/static/style.css")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    }
}
