//! The database component: a real MariaDB/MySQL server managed by webstack.
//!
//! `engine` finds the server binaries (system, cache, or downloaded without root);
//! `instance` owns one server's folder, config, first start, grants and restarts.
//!
//! Architecture invariant: this crate speaks to MariaDB only through its own programs and
//! the MySQL protocol; it never reads a design (the node builds `DatabaseConfig`).

mod engine;
pub mod failover;
mod instance;
pub mod replication;

pub use engine::{default_cache_dir, Engine, EngineOrigin};
pub use instance::{grant_app_hosts, render_config, run, DatabaseConfig, DatabaseEvents};
pub use replication::{ReplicationRole, ReplicationSettings, ReplicationStatus};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("no MySQL-compatible server found: install MariaDB (Debian/Ubuntu: apt-get install mariadb-server-core mariadb-client-core; Fedora: dnf install mariadb-server; macOS: brew install mariadb), or set WEBSTACK_MARIADBD to a mariadbd binary")]
    NoEngine,
    #[error("could not obtain MariaDB without root: {0}\nInstall it instead: apt-get install mariadb-server-core mariadb-client-core (as root)")]
    Obtain(String),
    #[error("the database socket path {path} is too long for a Unix socket; use a shorter WEBSTACK_STATE_DIR")]
    PathTooLong { path: PathBuf },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("initialising the data directory failed (full log: {log}):\n{tail}")]
    Initialise { log: PathBuf, tail: String },
    #[error("creating the application's database and user failed: {0}")]
    Provision(mysql_async::Error),
    #[error("cannot promote: {0}")]
    Promote(String),
}
