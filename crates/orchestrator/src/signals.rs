//! The signals that stop a foreground `webstack up`: Ctrl-C (SIGINT), `kill` (SIGTERM) and
//! a closed terminal (SIGHUP), and what `up` does about a reader of its output that went
//! away (SIGPIPE).

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Listens for every signal that means "stop the stack". Installed before the first node
/// starts, so a signal during start-up stops the nodes already running instead of killing
/// `up` and leaving them behind (they run in process groups of their own).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Installs the handlers, and makes writes to a closed pipe fail with EPIPE instead of
    /// killing the process: `webstack up | tee up.log` loses `tee` to the same Ctrl-C, and
    /// `up` still has the stack to stop. (Children are spawned with SIGPIPE restored to its
    /// default by the standard library, and exec resets the handlers installed here.)
    pub fn install() -> Result<StopSignals> {
        // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot install a {name} handler"))
        };
        Ok(StopSignals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for the next stop signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
