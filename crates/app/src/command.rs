//! Runs an application command named in the design, and restarts it when it crashes.
//!
//! The command gets its address and database in its environment (`HOST`, `PORT`,
//! `DATABASE_URL`, `WEBSTACK_SERVER`), like a twelve-factor app under a process manager.
//! A crash is followed by a restart after a backoff that doubles from 250 ms to 30 s and
//! starts over once the command has stayed up for 30 s.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct AppCommand {
    pub argv: Vec<String>,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// Where the command's output goes.
    pub log: PathBuf,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The backoff before the next start, given the last one and how long the command ran.
pub fn next_backoff(previous: Duration, ran_for: Duration) -> Duration {
    if ran_for >= STABLE_AFTER {
        FIRST_BACKOFF
    } else {
        (previous * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
    }
}

/// Keeps the command running until `shutdown`, then stops it (SIGTERM, then SIGKILL after
/// a grace period). `on_start` is told each new pid, so the node can report it.
pub async fn supervise(cmd: AppCommand, shutdown: CancellationToken, on_start: impl Fn(u32)) {
    let mut backoff = Duration::ZERO;
    loop {
        let started = Instant::now();
        let mut child = match spawn(&cmd) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("app command {:?} could not start: {e}", cmd.argv);
                backoff = next_backoff(backoff, Duration::ZERO);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        if let Some(pid) = child.id() {
            on_start(pid);
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop(&mut child).await;
                return;
            }
            status = child.wait() => {
                backoff = next_backoff(backoff, started.elapsed());
                eprintln!("app command {:?} exited ({}); restarting in {backoff:?}", cmd.argv, status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

fn spawn(cmd: &AppCommand) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cmd.log)?;
    let mut c = Command::new(&cmd.argv[0]);
    c.args(&cmd.argv[1..])
        .current_dir(&cmd.dir)
        .envs(cmd.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    webstack_net::process::die_with_parent(&mut c);
    c.spawn()
}

/// SIGTERM, then SIGKILL if it has not exited within the grace period.
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        webstack_net::process::signal(pid, libc::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets_after_a_stable_run() {
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            b = next_backoff(b, Duration::from_secs(1));
            seen.push(b);
        }
        assert_eq!(seen[0], FIRST_BACKOFF);
        assert_eq!(seen[1], FIRST_BACKOFF * 2);
        assert_eq!(*seen.last().unwrap(), MAX_BACKOFF);
        assert_eq!(next_backoff(MAX_BACKOFF, STABLE_AFTER), FIRST_BACKOFF);
    }
}
