//! `webstack deploy`: a rolling deploy of a new release of the codebase, one app server at
//! a time. For each one: drain it on every load balancer that reaches it only through
//! it, wait for its requests in flight, let its node replace the release (the old one
//! stops gracefully), wait for the new one's health check, and put it back. A release
//! that fails its health check is rolled back on that server and the deploy stops, so the
//! servers not yet done keep the old release and the site stays up.
//!
//! With one app server there is nothing to shift the traffic to: the deploy says so, does
//! it anyway, and reports the downtime it measured on the app server's port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use webstack_node::{read_status, ComponentState, Release, StackLayout};
use webstack_topology::{Codebase, Design};

use crate::db::node_alive;

#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The release label; from the folder's `VERSION` file or name when `None`.
    pub version: Option<String>,
    /// A folder with the new codebase (a codebase of the user's only).
    pub codebase: Option<PathBuf>,
    /// How long a new release may take to pass its health check.
    pub health_timeout: Duration,
    /// How long a drained server's requests in flight may take to finish.
    pub drain_timeout: Duration,
}

/// A load balancer's backend to take out while an app server restarts: the web server
/// whose only upstream is that app server.
#[derive(Debug, Clone, PartialEq)]
struct Drain {
    lb: String,
    stats: SocketAddr,
    backend: String,
}

/// The releases a deploy leaves, by server, and what clients could have noticed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployReport {
    pub version: String,
    pub servers: Vec<ServerOutcome>,
    /// The longest time an app server that was not drained first failed its health
    /// check: the downtime its clients saw (0 when every server was drained).
    pub downtime_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerOutcome {
    pub server: String,
    /// `deployed`, `pending` (the node is down: it starts the release when it comes
    /// back), `rolled back`, `not deployed`.
    pub outcome: String,
    /// How long the app server failed its health check while its release was replaced.
    pub unavailable_ms: f64,
    pub drained: bool,
}

/// The deploy stopped: a new release failed its health check and was rolled back.
#[derive(Debug)]
pub struct DeployFailed {
    pub report: DeployReport,
    pub reason: String,
}

impl std::fmt::Display for DeployFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the deploy stopped: {}", self.reason)
    }
}

impl std::error::Error for DeployFailed {}

/// Works out the release to deploy from the options and the design.
pub fn release_of(design: &Design, opts: &DeployOptions) -> Result<Release> {
    let codebase = match (&design.codebase, &opts.codebase) {
        (Codebase::Builtin(name), Some(_)) => bail!(
            "design {} runs the built-in codebase {name:?}, which has no folder to replace; deploy a new version of it with --version LABEL",
            design.name
        ),
        (_, Some(dir)) => {
            let meta = std::fs::metadata(dir)
                .with_context(|| format!("cannot read the codebase folder {}", dir.display()))?;
            if !meta.is_dir() {
                bail!("{} is not a folder: deploy a folder that holds the new codebase", dir.display());
            }
            Some(dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?)
        }
        (_, None) => None,
    };
    let version = match (&opts.version, &codebase) {
        (Some(v), _) => v.clone(),
        (None, Some(dir)) => match std::fs::read_to_string(dir.join("VERSION")) {
            Ok(text) if !text.trim().is_empty() => text.lines().next().unwrap_or("").trim().to_string(),
            _ => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        (None, None) => bail!("name the release: --version LABEL (or deploy a folder, whose VERSION file or name is its label)"),
    };
    check_label(&version)?;
    Ok(Release { version, codebase })
}

/// A label goes into a response header and a file: printable ASCII, no spaces, at most 64.
fn check_label(v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{v:?} is not a release label: use 1 to 64 printable ASCII characters without spaces, like 2 or 2026-12-01.1");
    }
    Ok(())
}

/// The backends to drain while `app_server` restarts, on every load balancer.
fn drains_for(design: &Design, app_server: &str) -> Vec<Drain> {
    let only_through: Vec<&str> = design
        .servers
        .iter()
        .filter(|s| {
            s.web.as_ref().is_some_and(|w| {
                w.upstreams.iter().all(|u| u == app_server) && !w.upstreams.is_empty()
            })
        })
        .map(|s| s.name.as_str())
        .collect();
    design
        .servers
        .iter()
        .filter_map(|s| Some((s, s.load_balancer.as_ref()?)))
        .flat_map(|(s, lb)| {
            lb.backends
                .iter()
                .filter(|b| only_through.contains(&b.server.as_str()))
                .map(|b| Drain {
                    lb: s.name.clone(),
                    stats: SocketAddr::new(s.address, lb.stats_port),
                    backend: b.server.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Rolls `release` out to every app server of the design, one at a time. `say` is told
/// each step as it happens.
pub async fn deploy(
    design: &Design,
    layout: &StackLayout,
    release: &Release,
    opts: &DeployOptions,
    say: &dyn Fn(String),
) -> Result<DeployReport, anyhow::Error> {
    let apps: Vec<(String, SocketAddr)> = design
        .servers
        .iter()
        .filter_map(|s| {
            Some((
                s.name.clone(),
                SocketAddr::new(s.address, s.app.as_ref()?.port),
            ))
        })
        .collect();
    if apps.is_empty() {
        bail!("design {} has no app server to deploy to", design.name);
    }
    let _lock = DeployLock::take(layout)?;
    if apps.len() == 1 {
        say(format!(
            "WARNING: design {} has one app server ({}): no other server can take its traffic while it restarts, so any gap is downtime for the site. Deploying anyway, and measuring it.",
            design.name, apps[0].0
        ));
    }
    say(format!(
        "deploying version {} to {} app server{}, one at a time",
        release.version,
        apps.len(),
        if apps.len() == 1 { "" } else { "s" }
    ));
    let mut report = DeployReport {
        version: release.version.clone(),
        servers: Vec::new(),
        downtime_ms: 0.0,
    };
    for (i, (server, addr)) in apps.iter().enumerate() {
        let release_file = layout.release_file(server);
        let previous = Release::read(&release_file);
        if !node_alive(layout, server) {
            release
                .write(&release_file)
                .context("cannot write the release file")?;
            say(format!("{server}: down; it starts version {} when it comes back (`webstack start {server}`)", release.version));
            report.servers.push(outcome(server, "pending", 0.0, false));
            continue;
        }
        if previous == *release {
            say(format!(
                "{server}: runs version {} already",
                release.version
            ));
            report.servers.push(outcome(server, "deployed", 0.0, false));
            continue;
        }
        // Drain only where another backend stays in service: draining a load balancer's
        // last backend would turn a short restart into 503s for as long as it lasts.
        let drains: Vec<Drain> = drains_for(design, server)
            .into_iter()
            .filter(|d| other_backend_ready(design, d, server))
            .collect();
        for d in &drains {
            crate::lb::set_state(design, Some(&d.lb), &d.backend, "drain").await?;
        }
        if !drains.is_empty() {
            let t = Instant::now();
            let left = wait_drained(&drains, opts.drain_timeout).await;
            say(format!(
                "{server}: drained on {} ({} in flight after {} ms)",
                drains
                    .iter()
                    .map(|d| format!("{} ({})", d.lb, d.backend))
                    .collect::<Vec<_>>()
                    .join(", "),
                left,
                t.elapsed().as_millis()
            ));
        }
        let probe = Probe::start(*addr, crate::status::app_health_check(design));
        release
            .write(&release_file)
            .context("cannot write the release file")?;
        let healthy =
            wait_release(design, layout, server, *addr, release, opts.health_timeout).await;
        let unavailable = probe.stop().await;
        match healthy {
            Ok(took) => {
                say(format!(
                    "{server}: version {} → {}: healthy {} ms after the switch; it failed its health check for {:.0} ms",
                    previous.version,
                    release.version,
                    took.as_millis(),
                    unavailable
                ));
                if drains.is_empty() {
                    report.downtime_ms = report.downtime_ms.max(unavailable);
                }
                undrain(design, &drains, opts.health_timeout, server, say).await?;
                report
                    .servers
                    .push(outcome(server, "deployed", unavailable, !drains.is_empty()));
            }
            Err(why) => {
                say(format!("{server}: version {} failed its health check: {why}; rolling back to version {}", release.version, previous.version));
                previous
                    .write(&release_file)
                    .context("cannot write the release file")?;
                let back = wait_release(
                    design,
                    layout,
                    server,
                    *addr,
                    &previous,
                    opts.health_timeout,
                )
                .await;
                match &back {
                    Ok(_) => say(format!("{server}: back on version {}", previous.version)),
                    Err(e) => say(format!(
                        "{server}: version {} does not pass its health check either: {e}",
                        previous.version
                    )),
                }
                undrain(design, &drains, opts.health_timeout, server, say).await?;
                report.servers.push(outcome(
                    server,
                    "rolled back",
                    unavailable,
                    !drains.is_empty(),
                ));
                for (rest, _) in &apps[i + 1..] {
                    report
                        .servers
                        .push(outcome(rest, "not deployed", 0.0, false));
                }
                let kept: Vec<&str> = apps[i + 1..].iter().map(|(n, _)| n.as_str()).collect();
                return Err(DeployFailed {
                    reason: format!(
                        "version {} failed its health check on {server} ({why}); {server} was rolled back to version {}{}",
                        release.version,
                        previous.version,
                        if kept.is_empty() { String::new() } else { format!(", and {} {} on the version {} run{}", kept.join(", "), if kept.len() == 1 { "stays" } else { "stay" }, if kept.len() == 1 { "it" } else { "they" }, if kept.len() == 1 { "s" } else { "" }) }
                    ),
                    report,
                }
                .into());
            }
        }
    }
    let undrained: Vec<&str> = report
        .servers
        .iter()
        .filter(|s| !s.drained && s.outcome == "deployed" && s.unavailable_ms > 0.0)
        .map(|s| s.server.as_str())
        .collect();
    say(if !undrained.is_empty() {
        format!("done: version {} is deployed; downtime {:.0} ms: {} failed its health check that long while clients were still sent to it", release.version, report.downtime_ms, undrained.join(", "))
    } else if report
        .servers
        .iter()
        .all(|s| s.drained || s.outcome != "deployed")
    {
        format!("done: version {} is deployed; every app server was out of service while it restarted, so no request went to one that was restarting", release.version)
    } else {
        format!("done: version {} is deployed; downtime 0 ms: the app servers clients were sent to never failed their health check (the built-in app hands its listening socket to the new release)", release.version)
    });
    Ok(report)
}

fn outcome(server: &str, outcome: &str, unavailable_ms: f64, drained: bool) -> ServerOutcome {
    ServerOutcome {
        server: server.to_string(),
        outcome: outcome.to_string(),
        unavailable_ms,
        drained,
    }
}

/// Whether the load balancer keeps another backend in service while `d` is drained.
fn other_backend_ready(design: &Design, d: &Drain, app_server: &str) -> bool {
    let others = drains_for(design, app_server);
    design
        .server(&d.lb)
        .and_then(|s| s.load_balancer.as_ref())
        .is_some_and(|lb| {
            lb.backends
                .iter()
                .any(|b| !others.iter().any(|o| o.lb == d.lb && o.backend == b.server))
        })
}

/// Waits until no drained backend has a request in flight; returns how many are left.
async fn wait_drained(drains: &[Drain], timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = 0;
        for d in drains {
            left += backend(d.stats, &d.backend)
                .await
                .and_then(|b| b["active"].as_u64())
                .unwrap_or(0);
        }
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts drained backends back and waits until each load balancer sees them up.
async fn undrain(
    design: &Design,
    drains: &[Drain],
    timeout: Duration,
    server: &str,
    say: &dyn Fn(String),
) -> Result<()> {
    if drains.is_empty() {
        return Ok(());
    }
    for d in drains {
        crate::lb::set_state(design, Some(&d.lb), &d.backend, "ready").await?;
    }
    let deadline = Instant::now() + timeout;
    for d in drains {
        while !backend(d.stats, &d.backend)
            .await
            .is_some_and(|b| b["up"] == true)
        {
            if Instant::now() >= deadline {
                say(format!("{server}: {} does not see {} up yet; it goes back in service once its health checks pass", d.lb, d.backend));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    say(format!(
        "{server}: back in service on {}",
        drains
            .iter()
            .map(|d| d.lb.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

async fn backend(stats: SocketAddr, name: &str) -> Option<serde_json::Value> {
    crate::lb::backends(stats)
        .await
        .ok()?
        .into_iter()
        .find(|b| b["name"] == name)
}

/// Waits until the node runs `release` and the app server passes its health check;
/// returns how long that took, or why it did not.
async fn wait_release(
    design: &Design,
    layout: &StackLayout,
    server: &str,
    addr: SocketAddr,
    release: &Release,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let (path, fail_from) = crate::status::app_health_check(design);
    let mut last = "the node has not started it yet".to_string();
    loop {
        let app = read_status(&layout.node_status(server))
            .and_then(|s| s.components.into_iter().find(|c| c.kind == "app"));
        let started_it = app.as_ref().is_some_and(|c| {
            c.version.as_deref() == Some(release.version.as_str())
                && c.state == ComponentState::Ready
        });
        if started_it {
            match crate::health::app_release(addr, path).await {
                Ok((status, version)) if status < fail_from => {
                    // The built-in app names its release; a command of the user's may not.
                    if version.as_deref().is_none_or(|v| v == release.version) {
                        return Ok(started.elapsed());
                    }
                    last = format!(
                        "GET {path} is answered by version {}",
                        version.unwrap_or_default()
                    );
                }
                Ok((status, _)) => last = format!("GET {path} → {status}"),
                Err(e) => last = format!("GET {path}: {e}"),
            }
        }
        if !node_alive(layout, server) {
            return Err("its node stopped".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("not healthy within {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Measures how long an app server fails while its release is replaced: its health check
/// every 5 ms; the longest run of failures, from the last success before it to the first
/// after (how `webstack bench` measures a client's longest gap).
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl Probe {
    fn start(addr: SocketAddr, (path, fail_from): (&'static str, u16)) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut last_ok = Instant::now();
            let mut down_since: Option<Instant> = None;
            let mut longest = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let answered = crate::health::app_release(addr, path)
                    .await
                    .is_ok_and(|(status, _)| status < fail_from);
                let now = Instant::now();
                match (answered, down_since) {
                    (true, Some(since)) => {
                        longest = longest.max(now - since);
                        down_since = None;
                        last_ok = now;
                    }
                    (true, None) => last_ok = now,
                    (false, None) => down_since = Some(last_ok),
                    (false, Some(_)) => {}
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Still failing when told to stop (a release that never became healthy).
            if let Some(since) = down_since {
                longest = longest.max(since.elapsed());
            }
            longest.as_secs_f64() * 1000.0
        });
        Probe { stop, task }
    }

    async fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0.0)
    }
}

/// One deploy at a time per stack: a lock file holding the deploying process's pid.
struct DeployLock {
    path: PathBuf,
}

impl DeployLock {
    fn take(layout: &StackLayout) -> Result<DeployLock> {
        let path = layout.root().join("deploy.lock");
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            if webstack_net::process::alive(pid) {
                bail!("another deploy (pid {pid}) is running on this stack; wait for it to finish");
            }
        }
        std::fs::write(&path, std::process::id().to_string())
            .context("cannot write the deploy lock")?;
        Ok(DeployLock { path })
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_the_web_server_that_only_reaches_the_app_server() {
        let d = webstack_topology::load("distributed").unwrap().design;
        let drains = drains_for(&d, "server1");
        assert_eq!(drains.len(), 1);
        assert_eq!(
            (drains[0].lb.as_str(), drains[0].backend.as_str()),
            ("lb1", "server1")
        );
        assert!(other_backend_ready(&d, &drains[0], "server1"));
        // scaled: web1 is the only backend of both load balancers; draining it would take
        // the site down, so nothing is drained.
        let s = webstack_topology::load("scaled").unwrap().design;
        let drains = drains_for(&s, "app1");
        assert_eq!(drains.len(), 2);
        assert!(drains.iter().all(|d| !other_backend_ready(&s, d, "app1")));
    }

    #[test]
    fn release_labels_are_checked() {
        let d = webstack_topology::load("distributed").unwrap().design;
        let opts = DeployOptions {
            version: None,
            codebase: None,
            health_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
        };
        assert!(release_of(&d, &opts)
            .unwrap_err()
            .to_string()
            .contains("--version"));
        let with = |v: &str| DeployOptions {
            version: Some(v.into()),
            ..opts.clone()
        };
        assert_eq!(release_of(&d, &with("2")).unwrap().version, "2");
        assert!(release_of(&d, &with("two words")).is_err());
        assert!(release_of(&d, &with("")).is_err());
        let folder = DeployOptions {
            codebase: Some("/tmp".into()),
            ..with("2")
        };
        assert!(release_of(&d, &folder)
            .unwrap_err()
            .to_string()
            .contains("built-in"));
    }
}
