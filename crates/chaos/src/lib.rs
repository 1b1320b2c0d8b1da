//! `webstack chaos`: a steady load through a running stack (GETs of the home page, and
//! guestbook writes with unique ids whose acknowledgements the client records) while
//! faults are injected one at a time: kill, stop or pause a server chosen by a seeded
//! sequence (`schedule`), hold, repair it (start or resume), wait until the site serves
//! again, repeat, for a bounded time. Then the database is read back, and the verdict
//! (`verdict`, pure) says per fault the failed requests, the longest gap a client saw and
//! whether the site recovered; overall, acknowledged writes lost and writes applied
//! twice.
//!
//! Architecture invariant: traffic goes only to the stack's loopback addresses, and every
//! fault goes through the orchestrator's fault injection, by recorded pid.

pub mod schedule;
pub mod verdict;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use webstack_bench::{Bytes, TlsTarget};
use webstack_node::{current_primary, ClusterState, StackLayout};
use webstack_orchestrator::Fault;
use webstack_topology::Design;

pub use schedule::{Kind, Schedule};
use verdict::{FaultVerdict, FaultWindow, Request};

/// How long the site must serve without a failure to count as recovered.
pub const RECOVERED_AFTER: Duration = Duration::from_secs(1);
/// How long a repaired fault may take to recover before the run says it did not.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(60);
/// Every fifth request is a write.
const WRITE_EVERY: u64 = 5;

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub duration: Duration,
    pub seed: u64,
    pub kinds: Vec<Kind>,
    /// The servers faults may hit.
    pub servers: Vec<String>,
    /// How long each fault lasts before it is repaired.
    pub hold: Duration,
    /// Requests per second of the load.
    pub rate: f64,
    pub target: SocketAddr,
    pub host: String,
    pub tls: Option<TlsTarget>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub failed: u64,
    pub faults: Vec<FaultVerdict>,
    pub writes_acknowledged: u64,
    /// Acknowledged writes the primary does not have.
    pub writes_lost: u64,
    pub writes_applied_twice: u64,
    /// Why the writes could not be read back, if they could not.
    pub readback_error: Option<String>,
    pub recovered_all: bool,
}

impl ChaosReport {
    /// What makes the run a failure: lost or doubled writes, a fault the site did not
    /// recover from, writes that could not be checked.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.writes_lost > 0 {
            p.push(format!("{} acknowledged writes lost", self.writes_lost));
        }
        if self.writes_applied_twice > 0 {
            p.push(format!(
                "{} writes applied twice",
                self.writes_applied_twice
            ));
        }
        for f in self.faults.iter().filter(|f| !f.window.came_back) {
            p.push(format!(
                "{} did not come back after {} (see `webstack logs {}`)",
                f.window.server, f.window.fault, f.window.server
            ));
        }
        for f in self
            .faults
            .iter()
            .filter(|f| f.window.recovered_ms.is_none())
        {
            p.push(format!(
                "the site did not recover within {} s after {} {}",
                RECOVERY_PATIENCE.as_secs(),
                f.window.fault,
                f.window.server
            ));
        }
        if let Some(e) = &self.readback_error {
            p.push(format!("the writes could not be read back: {e}"));
        }
        p
    }
}

/// The run failed its verdict (the report is still printed).
#[derive(Debug)]
pub struct ChaosFailed(pub Vec<String>);

impl std::fmt::Display for ChaosFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chaos found: {}", self.0.join("; "))
    }
}

impl std::error::Error for ChaosFailed {}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// What the load saw.
struct Load {
    /// Idle keep-alive connections; a request that finds none opens one.
    idle: Mutex<Vec<Sender>>,
    started: Instant,
    issued: AtomicU64,
    stop: AtomicBool,
    requests: Mutex<Vec<Request>>,
    acknowledged: Mutex<Vec<String>>,
    run: String,
}

impl Load {
    fn ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    fn snapshot(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }
}

/// The running stack chaos works on.
pub struct Stack<'a> {
    pub design: &'a Design,
    pub layout: &'a StackLayout,
    pub state_dir: &'a Path,
    pub exe: &'a Path,
}

pub async fn run(
    stack: Stack<'_>,
    config: ChaosConfig,
    say: &dyn Fn(String),
) -> Result<ChaosReport> {
    if config.servers.is_empty() || config.kinds.is_empty() {
        bail!("chaos needs at least one server and one kind of fault");
    }
    if !config.target.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: chaos only sends traffic to this machine",
            config.target
        );
    }
    let run_id = format!(
        "chaos-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let load = Arc::new(Load {
        idle: Mutex::new(Vec::new()),
        started: Instant::now(),
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        requests: Mutex::new(Vec::new()),
        acknowledged: Mutex::new(Vec::new()),
        run: run_id,
    });
    let pacer = tokio::spawn(pace(load.clone(), config.clone()));
    let deadline = load.started + config.duration;
    let mut schedule = Schedule::new(config.seed, config.kinds.clone(), config.servers.clone());
    let mut windows: Vec<FaultWindow> = Vec::new();
    // A calm start, so the first fault meets a serving site.
    tokio::time::sleep(RECOVERED_AFTER).await;
    while Instant::now() + config.hold < deadline {
        let (kind, server) = schedule.next_fault();
        let injected_ms = load.ms();
        say(format!(
            "{:>7.1}s  {} {server}",
            injected_ms / 1000.0,
            kind.name()
        ));
        let fault = match kind {
            Kind::Kill => Fault::Kill,
            Kind::Stop => Fault::Stop,
            Kind::Pause => Fault::Pause,
        };
        if let Err(e) = fault_on(&stack, fault, &server).await {
            say(format!("          {} {server} failed: {e:#}", kind.name()));
            continue;
        }
        tokio::time::sleep(config.hold).await;
        let repair = match kind {
            Kind::Kill | Kind::Stop => Fault::Start,
            Kind::Pause => Fault::Resume,
        };
        let repaired = fault_on(&stack, repair, &server).await;
        let repaired_ms = load.ms();
        let came_back = match repaired {
            Ok(_) => true,
            Err(e) => {
                say(format!("          bringing {server} back failed: {e:#}"));
                false
            }
        };
        let patience = Instant::now() + RECOVERY_PATIENCE;
        let recovered_ms = loop {
            if let Some(at) = verdict::recovered(&load.snapshot(), repaired_ms, RECOVERED_AFTER) {
                break Some(at);
            }
            if Instant::now() >= patience {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (_, failed, gap) = verdict::judge(&load.snapshot(), injected_ms, load.ms());
        say(match recovered_ms {
            Some(_) if failed == 0 => "          no request failed".to_string(),
            Some(at) => format!(
                "          {failed} requests failed, longest gap {gap:.0} ms; serving again {:.1} s after the fault",
                (at - injected_ms) / 1000.0
            ),
            None => format!("          NOT recovered {} s after the repair", RECOVERY_PATIENCE.as_secs()),
        });
        windows.push(FaultWindow {
            fault: kind.name().into(),
            server,
            injected_ms,
            repaired_ms,
            came_back,
            recovered_ms,
        });
        if recovered_ms.is_none() {
            break;
        }
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(remaining.min(Duration::from_secs(2))).await;
    load.stop.store(true, Ordering::Relaxed);
    let _ = pacer.await;

    let requests = load.snapshot();
    let end_ms = load.ms();
    let faults: Vec<FaultVerdict> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let until = windows
                .get(i + 1)
                .map(|n| n.injected_ms)
                .unwrap_or(end_ms)
                .min(w.recovered_ms.map_or(end_ms, |r| r + 1.0));
            let (n, failed, gap) = verdict::judge(&requests, w.injected_ms, until);
            FaultVerdict {
                window: w.clone(),
                requests: n,
                failed,
                longest_gap_ms: gap,
            }
        })
        .collect();
    let acknowledged = load.acknowledged.lock().expect("acks lock").clone();
    let (lost, twice, readback_error) = match readback(&stack, &load.run, &acknowledged).await {
        Ok((lost, twice)) => (lost, twice, None),
        Err(e) => (0, 0, Some(format!("{e:#}"))),
    };
    Ok(ChaosReport {
        seed: config.seed,
        duration_s: end_ms / 1000.0,
        requests: requests.len() as u64,
        failed: requests.iter().filter(|r| !r.ok).count() as u64,
        recovered_all: faults.iter().all(|f| f.window.recovered_ms.is_some()),
        faults,
        writes_acknowledged: acknowledged.len() as u64,
        writes_lost: lost,
        writes_applied_twice: twice,
        readback_error,
    })
}

async fn fault_on(stack: &Stack<'_>, fault: Fault, server: &str) -> Result<String> {
    webstack_orchestrator::apply_fault(
        fault,
        stack.design,
        stack.layout,
        stack.state_dir,
        stack.exe,
        server,
    )
    .await
}

/// The load, open-loop: each request is sent when it is due, on a task of its own, so a
/// stalled site meets every request the users would have sent (a closed loop would stop
/// sending while its connections wait, and undercount the failures).
async fn pace(load: Arc<Load>, config: ChaosConfig) {
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        let n = load.issued.fetch_add(1, Ordering::Relaxed);
        let due = load.started + Duration::from_secs_f64(n as f64 / config.rate);
        tokio::time::sleep_until(due.into()).await;
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        while inflight.try_join_next().is_some() {}
        inflight.spawn(one(load.clone(), config.clone(), n));
    }
    while inflight.join_next().await.is_some() {}
}

/// One request of the load; every fifth is a write with a unique message.
async fn one(load: Arc<Load>, config: ChaosConfig, n: u64) {
    {
        let sent_ms = load.ms();
        let write = n.is_multiple_of(WRITE_EVERY);
        let id = format!("{}-{n}", load.run);
        let idle = load.idle.lock().expect("idle lock").pop();
        let mut sender = idle.filter(|s| !s.is_closed());
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            if sender.is_none() {
                sender = Some(
                    webstack_bench::connect(config.target, config.tls.as_ref())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let s = sender.as_mut().expect("connected above");
            let req = hyper::Request::builder()
                .method(if write { "POST" } else { "GET" })
                .uri(if write { "/api/messages" } else { "/" })
                .header("host", &config.host)
                .header("user-agent", "webstack-chaos")
                .header("content-type", "application/json")
                .body(Full::new(if write {
                    Bytes::from(format!(r#"{{"author":"chaos","message":"{id}"}}"#))
                } else {
                    Bytes::new()
                }))
                .expect("a valid request");
            let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u16, String>(status)
        })
        .await;
        let ok = match outcome {
            Ok(Ok(status)) if write => status == 201,
            Ok(Ok(status)) => status < 500,
            _ => {
                sender = None;
                false
            }
        };
        if let Some(s) = sender.filter(|s| !s.is_closed()) {
            load.idle.lock().expect("idle lock").push(s);
        }
        if ok && write {
            load.acknowledged.lock().expect("acks lock").push(id);
        }
        load.requests.lock().expect("requests lock").push(Request {
            sent_ms,
            done_ms: load.ms(),
            ok,
        });
    }
}

/// Reads the run's writes back from the cluster's primary: how many acknowledged ones it
/// lacks, and how many it holds twice.
async fn readback(stack: &Stack<'_>, run: &str, acknowledged: &[String]) -> Result<(u64, u64)> {
    let design = stack.design;
    let Some(db) = design
        .servers
        .iter()
        .find_map(|s| s.app.as_ref()?.database.clone())
    else {
        bail!(
            "the design's app servers use no database server (SQLite stays inside each app server)"
        );
    };
    let state = ClusterState::read(&stack.layout.cluster_file());
    let primary = current_primary(design, &state, &db).context("no primary")?;
    let socket: PathBuf = stack
        .layout
        .server_dir(&primary)
        .join("database/mysqld.sock");
    let rows: Vec<(String, u64)> = async {
        use mysql_async::prelude::*;
        let mut conn = webstack_database::replication::root_conn(&socket).await?;
        let rows = conn
            .exec(
                "SELECT message, COUNT(*) FROM foobar.messages WHERE message LIKE ? GROUP BY message",
                (format!("{run}-%"),),
            )
            .await?;
        let _ = conn.disconnect().await;
        Ok::<_, mysql_async::Error>(rows)
    }
    .await
    .with_context(|| format!("reading the primary {primary}"))?;
    let lost = acknowledged
        .iter()
        .filter(|a| !rows.iter().any(|(m, _)| m == *a))
        .count() as u64;
    let twice = rows.iter().filter(|(_, n)| *n > 1).count() as u64;
    Ok((lost, twice))
}

/// The report for people.
pub fn render(r: &ChaosReport, design: &str) -> String {
    let mut out = format!(
        "\nchaos on {design}: {} faults in {:.0} s (seed {}), {} requests, {} failed\n",
        r.faults.len(),
        r.duration_s,
        r.seed,
        r.requests,
        r.failed
    );
    out.push_str(&format!(
        "{:>8}  {:<6} {:<10} {:>16} {:>12}  {}\n",
        "at", "fault", "server", "failed/requests", "longest gap", "site"
    ));
    for f in &r.faults {
        out.push_str(&format!(
            "{:>7.1}s  {:<6} {:<10} {:>16} {:>9.0} ms  {}\n",
            f.window.injected_ms / 1000.0,
            f.window.fault,
            f.window.server,
            format!("{}/{}", f.failed, f.requests),
            f.longest_gap_ms,
            match f.window.recovered_ms {
                None => "NOT recovered".to_string(),
                Some(_) if f.failed == 0 => "no outage".to_string(),
                Some(at) => format!("back in {:.1} s", (at - f.window.injected_ms) / 1000.0),
            }
        ));
    }
    out.push_str(&format!(
        "writes: {} acknowledged, {} lost, {} applied twice{}\n",
        r.writes_acknowledged,
        r.writes_lost,
        r.writes_applied_twice,
        r.readback_error
            .as_ref()
            .map(|e| format!(" (not checked: {e})"))
            .unwrap_or_default()
    ));
    let problems = r.problems();
    if problems.is_empty() {
        out.push_str(
            "verdict: no acknowledged write lost, and the site recovered after every fault\n",
        );
    } else {
        out.push_str(&format!("verdict: FAILED: {}\n", problems.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lost: u64, came_back: bool, recovered: bool) -> ChaosReport {
        let window = FaultWindow {
            fault: "kill".into(),
            server: "db1".into(),
            injected_ms: 0.0,
            repaired_ms: 3000.0,
            came_back,
            recovered_ms: recovered.then_some(3500.0),
        };
        ChaosReport {
            seed: 1,
            duration_s: 10.0,
            requests: 10,
            failed: 1,
            faults: vec![FaultVerdict {
                window,
                requests: 10,
                failed: 1,
                longest_gap_ms: 120.0,
            }],
            writes_acknowledged: 2,
            writes_lost: lost,
            writes_applied_twice: 0,
            readback_error: None,
            recovered_all: recovered,
        }
    }

    #[test]
    fn lost_writes_a_server_that_stayed_down_and_no_recovery_fail_the_run() {
        assert!(report(0, true, true).problems().is_empty());
        assert_eq!(
            report(1, true, true).problems(),
            ["1 acknowledged writes lost"]
        );
        assert!(report(0, false, true).problems()[0].starts_with("db1 did not come back"));
        assert!(report(0, true, false).problems()[0].contains("did not recover"));
        let text = render(&report(0, true, true), "ha");
        assert!(
            text.contains("back in 3.5 s") && text.contains("verdict: no acknowledged write lost"),
            "{text}"
        );
    }
}
