//! Fault injection on a running stack, by the pids it recorded: `kill` (SIGKILL to the
//! whole server: node and the processes it runs), `stop` (graceful), `start`, `pause`
//! (SIGSTOP, the server freezes as a hung machine does) and `resume`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use webstack_net::process::{alive, signal};
use webstack_node::StackLayout;
use webstack_topology::Design;

use crate::record::StackRecord;
use crate::status::collect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Stop,
    Start,
    Pause,
    Resume,
}

/// Applies a fault to one server and says what happened. `exe` is the webstack binary
/// (`start` runs a new node).
pub async fn apply(
    fault: Fault,
    design: &Design,
    layout: &StackLayout,
    state_dir: &Path,
    exe: &Path,
    server: &str,
) -> Result<String> {
    let mut record = StackRecord::read(layout)?.context("the stack is not running")?;
    let Some(node) = record.nodes.iter().find(|n| n.server == server).cloned() else {
        let names: Vec<&str> = record.nodes.iter().map(|n| n.server.as_str()).collect();
        bail!(
            "the stack has no server {server:?} (servers: {})",
            names.join(", ")
        );
    };
    let running = alive(node.pid);
    match fault {
        Fault::Start => {
            if running {
                bail!("server {server} is already running (pid {})", node.pid);
            }
            let child = crate::up::spawn_node(exe, state_dir, layout, &record, server)?;
            let pid = child.id();
            record
                .nodes
                .iter_mut()
                .filter(|n| n.server == server)
                .for_each(|n| n.pid = pid);
            record.write(layout)?;
            wait_healthy(
                design,
                layout,
                &record,
                state_dir,
                server,
                Duration::from_secs(180),
            )
            .await?;
            Ok(format!("started {server} (pid {pid}); it is healthy"))
        }
        _ if !running => {
            bail!("server {server} is not running; `webstack start {server}` starts it")
        }
        // The node runs in a process group of its own (pgid = its pid), which its
        // children share: signalling the group reaches the whole server.
        Fault::Kill => {
            signal_group(node.pid, libc::SIGKILL);
            wait_gone(node.pid, Duration::from_secs(10));
            Ok(format!(
                "killed {server} (process group {}): the server is lost, as if it lost power",
                node.pid
            ))
        }
        Fault::Stop => {
            signal(node.pid, libc::SIGCONT);
            signal(node.pid, libc::SIGTERM);
            if !wait_gone(node.pid, Duration::from_secs(45)) {
                signal_group(node.pid, libc::SIGKILL);
                wait_gone(node.pid, Duration::from_secs(5));
                return Ok(format!("{server} did not stop within 45 s and was killed"));
            }
            Ok(format!("stopped {server} gracefully"))
        }
        Fault::Pause => {
            signal_group(node.pid, libc::SIGSTOP);
            Ok(format!("paused {server}: its processes are frozen and its connections hang; `webstack resume {server}` thaws it"))
        }
        Fault::Resume => {
            signal_group(node.pid, libc::SIGCONT);
            Ok(format!("resumed {server}"))
        }
    }
}

fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: kill(2) on a negative pid signals that process group; no memory effects.
    unsafe { libc::kill(-(pgid as i32), sig) };
}

fn wait_gone(pid: u32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

async fn wait_healthy(
    design: &Design,
    layout: &StackLayout,
    record: &StackRecord,
    state_dir: &Path,
    server: &str,
    patience: Duration,
) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let status = collect(design, layout, record, state_dir).await;
        let me = status.servers.iter().find(|s| s.name == server);
        // A database that serves as a primary (or a fenced former one) has started,
        // whether or not another server acknowledges its writes yet: that depends on the
        // other servers, and `status` shows it.
        let serving_database = || {
            webstack_node::read_status(&layout.node_status(server))
                .and_then(|n| n.components.into_iter().find(|c| c.kind == "database"))
                .and_then(|c| c.replication)
                .is_some_and(|r| r.role == "primary" || r.role == "fenced")
        };
        if me.is_some_and(|s| {
            s.alive
                && s.components
                    .iter()
                    .all(|c| c.health.healthy || (c.kind == "database" && serving_database()))
        }) {
            return Ok(());
        }
        if me.is_some_and(|s| !s.alive) {
            bail!("server {server} exited while starting; see `webstack logs {server}`");
        }
        if Instant::now() > deadline {
            bail!(
                "server {server} was not healthy within {patience:?}; see `webstack logs {server}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
