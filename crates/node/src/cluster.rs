//! The database cluster's state at runtime. The design says which server is the primary;
//! after `webstack db promote` another one is, and the old one may be fenced. That is
//! kept in `cluster.json`, which database nodes read when they start and app servers
//! watch to find the primary.

use std::path::Path;

use serde::{Deserialize, Serialize};
use webstack_database::{ReplicationRole, ReplicationSettings};
use webstack_topology::Design;

use crate::StackLayout;

/// The replication user's name, the same on every database server.
pub const REPLICATION_USER: &str = "repl";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterState {
    /// The primary after the last promotion; `None` means the design's.
    pub primary: Option<String>,
    /// Former primaries replaced while down: read-only until rebuilt.
    #[serde(default)]
    pub fenced: Vec<String>,
    /// The last automatic failover, with its reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

/// An automatic failover, as the replica that promoted itself recorded it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailoverRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub from: String,
    pub to: String,
    pub reasons: Vec<String>,
}

impl ClusterState {
    pub fn read(path: &Path) -> ClusterState {
        crate::json_file::read_or_default(path)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::json_file::write_atomic(path, self)
    }
}

/// The current primary of the cluster `server`'s database belongs to.
pub fn current_primary(design: &Design, state: &ClusterState, server: &str) -> Option<String> {
    let (designed, replicas) = design.database_cluster(server)?;
    Some(match &state.primary {
        Some(p) if *p == designed || replicas.contains(p) => p.clone(),
        _ => designed,
    })
}

/// The replication settings of a database server, or `None` for a database that has no
/// replicas and is none.
pub fn replication_settings(
    design: &Design,
    layout: &StackLayout,
    server: &str,
    password: String,
) -> Option<ReplicationSettings> {
    let (designed, replicas) = design.database_cluster(server)?;
    if replicas.is_empty() {
        return None;
    }
    let state = ClusterState::read(&layout.cluster_file());
    let primary = current_primary(design, &state, server)?;
    let me = design.server(server)?;
    let members: Vec<&str> = std::iter::once(designed.as_str())
        .chain(replicas.iter().map(String::as_str))
        .collect();
    let role = if primary == server {
        // Every member, itself included: the accounts replicate to the others, and after a
        // promotion any member replicates from any other (through its relay, so from its
        // own address).
        ReplicationRole::Primary {
            replica_hosts: members
                .iter()
                .filter_map(|m| design.server(m))
                .map(|s| s.address)
                .collect(),
        }
    } else if state.fenced.iter().any(|f| f == server) {
        ReplicationRole::Fenced
    } else {
        // mariadbd connects to its node's relay, which connects from this server's
        // address (see `Design::replication_relay`).
        ReplicationRole::Replica {
            primary: design.replication_relay(server, &primary)?,
        }
    };
    let primary_db = design.server(&designed)?.database.as_ref()?;
    Some(ReplicationSettings {
        server_id: webstack_database::replication::server_id(me.address),
        role,
        user: REPLICATION_USER.into(),
        password,
        semi_sync_timeout: primary_db.semi_sync_timeout,
    })
}
