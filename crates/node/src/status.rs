//! The node's status file: what runs on the server, where it listens, which processes it
//! owns. Rewritten atomically (write, then rename) on every change, so a reader never sees
//! half a file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub server: String,
    pub pid: u32,
    pub components: Vec<ComponentStatus>,
    /// Connections decided by each firewall rule, the default deny last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Vec<u64>>,
    /// The floating IP this server's load balancer may hold, and its part in the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating: Option<FloatingStatus>,
    /// The last reload of a changed design (SIGHUP), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadStatus>,
}

/// What the node made of the designs it was told to reload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadStatus {
    /// How many reloads the node has handled since it started.
    pub generation: u64,
    /// What it changed live.
    pub applied: Vec<String>,
    /// What it could not change without a restart, or failed to apply.
    pub not_applied: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FloatingStatus {
    pub name: String,
    pub address: std::net::IpAddr,
    /// `MASTER`, `BACKUP`, `FAULT`.
    pub state: String,
    /// In effect (lowered while all backends are down).
    pub priority: u8,
    pub base_priority: u8,
    /// Whether this server has the address's ports bound right now.
    pub holding: bool,
    pub transitions: u64,
    /// Seconds since the Unix epoch, when it last became master.
    pub last_takeover: Option<f64>,
    /// The master, as this member last heard.
    pub master: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComponentStatus {
    /// `dns`, `web`, `app`, `database`.
    pub kind: String,
    pub listen: Vec<SocketAddr>,
    /// A process the component runs for the node (mariadbd, an app command).
    pub child_pid: Option<u32>,
    pub state: ComponentState,
    /// Databases in a replicated cluster: role, GTID position, lag, semi-sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<webstack_database::ReplicationStatus>,
    /// TLS endpoints: the certificate each one serves now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
    /// App servers: the release running (or starting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A TLS endpoint's certificate, as `webstack status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateStatus {
    pub listen: SocketAddr,
    /// `local CA`, `files`, `acme`.
    pub source: String,
    pub names: Vec<String>,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
    pub renew_at: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    Starting,
    Ready,
    Restarting,
    Stopped,
}

/// The node's status and the file it is kept in. A std `Mutex`: held only while the
/// struct is changed and written, never across an `.await`.
pub struct StatusFile {
    path: PathBuf,
    status: Mutex<NodeStatus>,
}

impl StatusFile {
    pub fn new(path: PathBuf, server: &str) -> StatusFile {
        let status = NodeStatus {
            server: server.to_string(),
            pid: std::process::id(),
            components: Vec::new(),
            firewall: None,
            floating: None,
            reload: None,
        };
        let file = StatusFile {
            path,
            status: Mutex::new(status),
        };
        file.update(|_| {});
        file
    }

    /// Changes the status and writes it out.
    pub fn update(&self, change: impl FnOnce(&mut NodeStatus)) {
        let mut status = self.status.lock().expect("status lock");
        change(&mut status);
        let text = serde_json::to_vec_pretty(&*status).expect("status serialises");
        let tmp = self.path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    pub fn add(&self, kind: &str, listen: Vec<SocketAddr>, state: ComponentState) {
        self.update(|s| {
            s.components.push(ComponentStatus {
                kind: kind.into(),
                listen,
                child_pid: None,
                state,
                replication: None,
                certificates: Vec::new(),
                version: None,
            })
        });
    }

    /// Records the certificate a TLS endpoint of `kind` serves now.
    pub fn set_certificate(&self, kind: &str, cert: CertificateStatus) {
        self.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == kind) {
                c.certificates.retain(|e| e.listen != cert.listen);
                c.certificates.push(cert);
            }
        });
    }

    pub fn set(&self, kind: &str, state: ComponentState, child_pid: Option<u32>) {
        self.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == kind) {
                c.state = state;
                c.child_pid = child_pid;
            }
        });
    }

    /// Records a database's replication state, writing the file only when it changed in a
    /// way a reader cares about (the lag moves on every heartbeat; a tenth of a second is
    /// the resolution kept).
    pub fn set_replication(
        &self,
        kind: &str,
        mut replication: webstack_database::ReplicationStatus,
    ) {
        replication.lag_ms = replication.lag_ms.map(|l| (l / 100.0).round() * 100.0);
        let changed = {
            let status = self.status.lock().expect("status lock");
            status
                .components
                .iter()
                .find(|c| c.kind == kind)
                .is_some_and(|c| c.replication.as_ref() != Some(&replication))
        };
        if changed {
            self.update(|s| {
                if let Some(c) = s.components.iter_mut().find(|c| c.kind == kind) {
                    c.replication = Some(replication);
                }
            });
        }
    }

    pub fn snapshot(&self) -> NodeStatus {
        self.status.lock().expect("status lock").clone()
    }
}

/// Reads a node's status file; `None` if it is missing or unreadable.
pub fn read_status(path: &std::path::Path) -> Option<NodeStatus> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
