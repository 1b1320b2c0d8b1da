//! Stops a stack: every node by its recorded pid (SIGTERM, then SIGKILL after a grace),
//! then any process a node left behind, then the runtime files. Data and logs stay, so the
//! next `up` finds the guestbook where it was; `--purge` removes them too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use webstack_net::process::{alive, signal};
use webstack_node::{read_status, StackLayout};

use crate::record::StackRecord;

/// Long enough for MariaDB's clean shutdown, which the node waits up to 30 s for.
const STOP_GRACE: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped: Vec<String>,
    pub killed: Vec<String>,
}

/// True if `pid` is a process this stack started: its command line names the stack's
/// folder. This guards against a recorded pid that the system has since given to
/// another process; nothing is ever signalled by name.
fn belongs_to(pid: u32, layout: &StackLayout) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let root = layout.root().display().to_string();
    let state = layout
        .root()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    text.contains(&root) || (!state.is_empty() && text.contains(&format!("--state-dir {state}")))
}

pub fn stop_stack(layout: &StackLayout, record: &StackRecord, purge: bool) -> Result<DownReport> {
    let mut report = DownReport::default();
    let mut children = Vec::new();
    let mut waiting = Vec::new();
    for node in &record.nodes {
        if let Some(status) = read_status(&layout.node_status(&node.server)) {
            children.extend(status.components.iter().filter_map(|c| c.child_pid));
        }
        if alive(node.pid) && belongs_to(node.pid, layout) {
            signal(node.pid, libc::SIGTERM);
            waiting.push(node);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while waiting.iter().any(|n| alive(n.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for node in waiting {
        if alive(node.pid) {
            signal(node.pid, libc::SIGKILL);
            report
                .killed
                .push(format!("{} (pid {})", node.server, node.pid));
        } else {
            report
                .stopped
                .push(format!("{} (pid {})", node.server, node.pid));
        }
    }
    // A node killed with SIGKILL takes its children along (they die with their parent),
    // but a child that ignored that, or a node killed before it could arrange it, is
    // stopped here by the pid the node recorded.
    for pid in children {
        if alive(pid) && belongs_to(pid, layout) {
            signal(pid, libc::SIGKILL);
            report.killed.push(format!("leftover process {pid}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while record.nodes.iter().any(|n| alive(n.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for node in &record.nodes {
        let _ = std::fs::remove_file(layout.node_status(&node.server));
        let _ = std::fs::remove_dir_all(layout.server_dir(&node.server).join("run"));
    }
    std::fs::remove_file(layout.stack_file())
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("cannot remove {}", layout.stack_file().display()))?;
    if purge {
        std::fs::remove_dir_all(layout.root())
            .with_context(|| format!("cannot remove {}", layout.root().display()))?;
    }
    Ok(report)
}

/// True if any recorded node of the stack still runs.
pub fn any_alive(layout: &StackLayout, record: &StackRecord) -> bool {
    record
        .nodes
        .iter()
        .any(|n| alive(n.pid) && belongs_to(n.pid, layout))
}
