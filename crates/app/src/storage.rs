//! The application's storage interface and its two backends: a MySQL-compatible server of
//! the design (the default), and SQLite embedded in the app server.
//!
//! The interface is the guestbook's few operations, not SQL: the two dialects differ in
//! small ways (auto-increment, types, locking), so each backend writes its own statements.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::*;
use serde::Serialize;
use tokio::sync::OnceCell;

/// One guestbook message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub author: String,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The app server that took the write.
    pub served_by: String,
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    MySql {
        /// The database server's name in the design, reported in responses.
        server_name: String,
        address: SocketAddr,
        user: String,
        password: String,
        database: String,
        /// The app server's own address: connections leave from it (through the relay
        /// socket), so grants and the firewall can name the app server.
        local: IpAddr,
        /// Where the relay to the database listens (see `webstack_net::relay`).
        relay_socket: PathBuf,
    },
    Sqlite { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("MySQL: {0}")]
    MySql(#[from] mysql_async::Error),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct Storage {
    backend: Backend,
    /// The schema is created on first use and again after a failure, so an app server
    /// that starts before its database comes up simply waits for it.
    schema: OnceCell<()>,
    name: String,
}

enum Backend {
    MySql(mysql_async::Pool),
    /// One connection behind a std `Mutex`: SQLite serialises writers anyway, and the lock
    /// is only taken inside `spawn_blocking`, never across an `.await`.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

/// How long one database operation may take before the request gets an error.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl Storage {
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        match config {
            StorageConfig::MySql { server_name, user, password, database, relay_socket, .. } => {
                let pool_opts = mysql_async::PoolOpts::default()
                    .with_constraints(mysql_async::PoolConstraints::new(0, 32).expect("0 <= 32"));
                let opts = mysql_async::OptsBuilder::default()
                    .socket(Some(relay_socket.display().to_string()))
                    .user(Some(user.clone()))
                    .pass(Some(password.clone()))
                    .db_name(Some(database.clone()))
                    .pool_opts(pool_opts);
                Ok(Storage { backend: Backend::MySql(mysql_async::Pool::new(opts)), schema: OnceCell::new(), name: server_name.clone() })
            }
            StorageConfig::Sqlite { path } => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(QUERY_TIMEOUT)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                Ok(Storage { backend: Backend::Sqlite(Arc::new(Mutex::new(conn))), schema: OnceCell::new(), name: "sqlite".into() })
            }
        }
    }

    /// The name of what answers: the database server, or `sqlite`.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn ensure_schema(&self) -> Result<(), StorageError> {
        self.schema
            .get_or_try_init(|| async {
                match &self.backend {
                    Backend::MySql(pool) => {
                        let mut conn = pool.get_conn().await?;
                        conn.query_drop(
                            "CREATE TABLE IF NOT EXISTS messages (
                                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                                author VARCHAR(64) NOT NULL,
                                message TEXT NOT NULL,
                                created_ms BIGINT NOT NULL,
                                served_by VARCHAR(64) NOT NULL
                            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                        )
                        .await?;
                        Ok(())
                    }
                    Backend::Sqlite(conn) => {
                        let conn = conn.clone();
                        blocking(move || {
                            conn.lock().expect("sqlite lock").execute_batch(
                                "CREATE TABLE IF NOT EXISTS messages (
                                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                                    author TEXT NOT NULL,
                                    message TEXT NOT NULL,
                                    created_ms INTEGER NOT NULL,
                                    served_by TEXT NOT NULL
                                )",
                            )?;
                            Ok(())
                        })
                        .await
                    }
                }
            })
            .await
            .map(|_| ())
    }

    /// Checks that the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        timed(async {
            match &self.backend {
                Backend::MySql(pool) => {
                    let mut conn = pool.get_conn().await?;
                    conn.query_drop("SELECT 1").await?;
                    Ok(())
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    blocking(move || Ok(conn.lock().expect("sqlite lock").query_row("SELECT 1", [], |_| Ok(()))?)).await
                }
            }
        })
        .await
    }

    pub async fn add_message(&self, author: &str, message: &str, served_by: &str) -> Result<Message, StorageError> {
        timed(async {
            self.ensure_schema().await?;
            let created_ms = now_ms();
            let id = match &self.backend {
                Backend::MySql(pool) => {
                    let mut conn = pool.get_conn().await?;
                    conn.exec_drop(
                        "INSERT INTO messages (author, message, created_ms, served_by) VALUES (?, ?, ?, ?)",
                        (author, message, created_ms, served_by),
                    )
                    .await?;
                    conn.last_insert_id().unwrap_or(0)
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    let (a, m, s) = (author.to_string(), message.to_string(), served_by.to_string());
                    blocking(move || {
                        let c = conn.lock().expect("sqlite lock");
                        c.execute("INSERT INTO messages (author, message, created_ms, served_by) VALUES (?1, ?2, ?3, ?4)", (a, m, created_ms, s))?;
                        Ok(c.last_insert_rowid() as u64)
                    })
                    .await?
                }
            };
            Ok(Message { id, author: author.into(), message: message.into(), created_ms, served_by: served_by.into() })
        })
        .await
    }

    /// The newest messages first.
    pub async fn list_messages(&self, limit: u32) -> Result<Vec<Message>, StorageError> {
        timed(async {
            self.ensure_schema().await?;
            match &self.backend {
                Backend::MySql(pool) => {
                    let mut conn = pool.get_conn().await?;
                    let rows: Vec<(u64, String, String, i64, String)> = conn
                        .exec("SELECT id, author, message, created_ms, served_by FROM messages ORDER BY id DESC LIMIT ?", (limit,))
                        .await?;
                    Ok(rows.into_iter().map(|(id, author, message, created_ms, served_by)| Message { id, author, message, created_ms, served_by }).collect())
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    blocking(move || {
                        let c = conn.lock().expect("sqlite lock");
                        let mut stmt = c.prepare("SELECT id, author, message, created_ms, served_by FROM messages ORDER BY id DESC LIMIT ?1")?;
                        let rows = stmt.query_map([limit], |r| {
                            Ok(Message { id: r.get::<_, i64>(0)? as u64, author: r.get(1)?, message: r.get(2)?, created_ms: r.get(3)?, served_by: r.get(4)? })
                        })?;
                        Ok(rows.collect::<Result<Vec<_>, _>>()?)
                    })
                    .await
                }
            }
        })
        .await
    }

    /// Closes the connections; MySQL gets a clean goodbye instead of a reset.
    pub async fn close(self) {
        if let Backend::MySql(pool) = self.backend {
            let _ = pool.disconnect().await;
        }
    }
}

async fn timed<T>(fut: impl std::future::Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
    tokio::time::timeout(QUERY_TIMEOUT, fut).await.map_err(|_| StorageError::Timeout(QUERY_TIMEOUT))?
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StorageError> + Send + 'static) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.expect("storage task panicked")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
