//! Where everything of a running stack lives under its state directory. The node writes
//! here and the orchestrator reads here, so both take their paths from this one place.
//!
//! ```text
//! <state>/stacks/<stack>/
//!   stack.json                  the orchestrator's record: design, subnet, node pids
//!   cluster.json                the database cluster after promotions (absent before)
//!   secrets/database.password   the app's database password (mode 0600)
//!   secrets/replication.password  the replication user's password (mode 0600)
//!   logs/<server>.log           each node's output
//!   tls/ca.crt, ca.key          the stack's local certificate authority (key 0600)
//!   servers/<server>/
//!     node.json                 the node's status: components, listeners, child pids
//!     release.json              the app's release after a deploy (absent before)
//!     access.log                the web server's access log
//!     codebase/public/          the built-in codebase's static files
//!     database/                 MariaDB: my.cnf, data/, error.log, socket
//!     run/                      private sockets (the relay to the database)
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StackLayout {
    root: PathBuf,
}

impl StackLayout {
    /// The layout of stack `name` under the state directory `state_dir`.
    pub fn new(state_dir: &Path, name: &str) -> StackLayout {
        StackLayout {
            root: state_dir.join("stacks").join(name),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn stack_file(&self) -> PathBuf {
        self.root.join("stack.json")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn database_password(&self) -> PathBuf {
        self.secrets_dir().join("database.password")
    }
    pub fn replication_password(&self) -> PathBuf {
        self.secrets_dir().join("replication.password")
    }
    /// The key that signs the floating IPs' heartbeats.
    pub fn heartbeat_secret(&self) -> PathBuf {
        self.secrets_dir().join("heartbeat.secret")
    }
    /// The database cluster's runtime state (who is primary after a promotion).
    pub fn cluster_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    /// The stack's local certificate authority.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn node_log(&self, server: &str) -> PathBuf {
        self.logs_dir().join(format!("{server}.log"))
    }
    pub fn server_dir(&self, server: &str) -> PathBuf {
        self.root.join("servers").join(server)
    }
    pub fn node_status(&self, server: &str) -> PathBuf {
        self.server_dir(server).join("node.json")
    }
    /// The release of the codebase an app server runs (written by `webstack deploy`).
    pub fn release_file(&self, server: &str) -> PathBuf {
        self.server_dir(server).join("release.json")
    }
}

/// The state directory: `WEBSTACK_STATE_DIR`, else `$XDG_STATE_HOME/webstack`, else
/// `~/.local/state/webstack`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEBSTACK_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("webstack");
    }
    home().join(".local/state/webstack")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}
