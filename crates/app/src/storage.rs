//! The application's storage interface and its two backends: a MySQL-compatible server of
//! the design (the default), and SQLite embedded in the app server.
//!
//! The interface is the guestbook's few operations, not SQL: the two dialects differ in
//! small ways (auto-increment, types, locking), so each backend writes its own statements.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// One database server the app may use: the primary or a replica.
#[derive(Debug, Clone)]
pub struct DbEndpoint {
    /// Its server's name in the design, reported in responses.
    pub name: String,
    pub address: SocketAddr,
    /// Where the relay to it listens (see `webstack_net::relay`).
    pub relay_socket: PathBuf,
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    MySql {
        /// The primary and its replicas.
        endpoints: Vec<DbEndpoint>,
        /// The designed primary; `cluster_file` says if a promotion replaced it.
        primary: String,
        cluster_file: PathBuf,
        user: String,
        password: String,
        database: String,
        /// The app server's own address: connections leave from it (through the relay
        /// sockets), so grants and the firewall can name the app server.
        local: IpAddr,
        /// Reads go to a replica only while its lag is under this bound.
        max_replica_lag: Duration,
        /// The cluster fails over by itself: a write that cannot reach the primary waits
        /// for the new one instead of failing at once.
        automatic_failover: bool,
    },
    Sqlite {
        path: PathBuf,
    },
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
}

enum Backend {
    MySql(Cluster),
    /// One connection behind a std `Mutex`: SQLite serialises writers anyway, and the lock
    /// is only taken inside `spawn_blocking`, never across an `.await`.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

/// The MySQL servers the app uses, and what it knows of them. The std locks are held for
/// a read or a swap of a small value, never across an `.await`.
struct Cluster {
    members: Vec<Member>,
    primary: std::sync::RwLock<String>,
    designed_primary: String,
    cluster_file: PathBuf,
    max_lag: Duration,
    next_replica: AtomicUsize,
    automatic_failover: bool,
}

struct Member {
    name: String,
    pool: mysql_async::Pool,
    /// The replica's lag as last measured; `None` when unknown or unreachable.
    lag: Mutex<Option<Duration>>,
}

/// How long one database operation may take before the request gets an error.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of a write: the message, and the GTID of its transaction (MySQL) that a
/// client's later reads wait for, so it reads its own writes on a replica.
pub struct Written {
    pub message: Message,
    pub gtid: Option<String>,
}

impl Storage {
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        match config {
            StorageConfig::MySql {
                endpoints,
                primary,
                cluster_file,
                user,
                password,
                database,
                max_replica_lag,
                automatic_failover,
                ..
            } => {
                let members = endpoints
                    .iter()
                    .map(|e| {
                        let pool_opts = mysql_async::PoolOpts::default().with_constraints(
                            mysql_async::PoolConstraints::new(0, 32).expect("0 <= 32"),
                        );
                        let opts = mysql_async::OptsBuilder::default()
                            .socket(Some(e.relay_socket.display().to_string()))
                            .user(Some(user.clone()))
                            .pass(Some(password.clone()))
                            .db_name(Some(database.clone()))
                            .pool_opts(pool_opts);
                        Member {
                            name: e.name.clone(),
                            pool: mysql_async::Pool::new(opts),
                            lag: Mutex::new(None),
                        }
                    })
                    .collect();
                let cluster = Cluster {
                    members,
                    primary: std::sync::RwLock::new(primary.clone()),
                    designed_primary: primary.clone(),
                    cluster_file: cluster_file.clone(),
                    max_lag: *max_replica_lag,
                    next_replica: AtomicUsize::new(0),
                    automatic_failover: *automatic_failover,
                };
                cluster.refresh_primary();
                Ok(Storage {
                    backend: Backend::MySql(cluster),
                    schema: OnceCell::new(),
                })
            }
            StorageConfig::Sqlite { path } => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(QUERY_TIMEOUT)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                Ok(Storage {
                    backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
                    schema: OnceCell::new(),
                })
            }
        }
    }

    /// The server that takes writes now: the primary, or `sqlite`.
    pub fn primary_name(&self) -> String {
        match &self.backend {
            Backend::MySql(c) => c.primary(),
            Backend::Sqlite(_) => "sqlite".into(),
        }
    }

    /// Keeps what the app knows of its databases current until `shutdown`: the primary
    /// (after a promotion, `cluster.json` names another) and each replica's lag.
    pub async fn maintain(&self, shutdown: tokio_util::sync::CancellationToken) {
        let Backend::MySql(cluster) = &self.backend else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            cluster.refresh_primary();
            let primary = cluster.primary();
            for m in cluster.members.iter().filter(|m| m.name != primary) {
                let lag = tokio::time::timeout(Duration::from_secs(1), async {
                    let mut conn = m.pool.get_conn().await?;
                    let us: Option<Option<i64>> = conn.query_first("SELECT TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) FROM webstack.heartbeat WHERE id = 1").await?;
                    Ok::<_, mysql_async::Error>(us.flatten())
                })
                .await;
                let lag = match lag {
                    Ok(Ok(Some(us))) => Some(Duration::from_micros(us.max(0) as u64)),
                    _ => None,
                };
                *m.lag.lock().expect("lag lock") = lag;
            }
        }
    }

    async fn ensure_schema(&self) -> Result<(), StorageError> {
        self.schema
            .get_or_try_init(|| async {
                match &self.backend {
                    Backend::MySql(cluster) => {
                        let mut conn = cluster.primary_member().pool.get_conn().await?;
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

    /// Checks that the primary answers a trivial query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        timed(async {
            match &self.backend {
                Backend::MySql(cluster) => {
                    let mut conn = cluster.primary_member().pool.get_conn().await?;
                    conn.query_drop("SELECT 1").await?;
                    Ok(())
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    blocking(move || {
                        Ok(conn
                            .lock()
                            .expect("sqlite lock")
                            .query_row("SELECT 1", [], |_| Ok(()))?)
                    })
                    .await
                }
            }
        })
        .await
    }

    /// Writes go to the primary.
    pub async fn add_message(
        &self,
        author: &str,
        message: &str,
        served_by: &str,
    ) -> Result<Written, StorageError> {
        timed(async {
            self.ensure_schema().await?;
            let created_ms = now_ms();
            let (id, gtid) = match &self.backend {
                Backend::MySql(cluster) => {
                    // A write the primary surely did not apply is held until cluster.json
                    // names a new primary, and sent there, within the query timeout: one
                    // it refused as read-only (a switchover, `webstack db switchover`),
                    // or one that could not even connect (a primary that died, while
                    // automatic failover replaces it). A write lost mid-statement is not
                    // retried: it may have been applied.
                    let mut refused_by: Option<String> = None;
                    loop {
                        let member = cluster.primary_member();
                        if refused_by.as_deref() == Some(member.name.as_str()) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            cluster.refresh_primary();
                            continue;
                        }
                        let why = match insert(member, author, message, created_ms, served_by).await {
                            Err(Insert::Failed(mysql_async::Error::Server(e))) if READ_ONLY_ERRORS.contains(&e.code) => {
                                format!("is read-only ({})", e.message)
                            }
                            Err(Insert::NotConnected(e)) if cluster.automatic_failover => {
                                format!("cannot be reached ({e})")
                            }
                            Err(Insert::Failed(e) | Insert::NotConnected(e)) => return Err(e.into()),
                            Ok(done) => break done,
                        };
                        if refused_by.is_none() {
                            eprintln!("app: {} {why}: holding the write until a new primary takes it", member.name);
                        }
                        refused_by = Some(member.name.clone());
                    }
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    let (a, m, s) = (author.to_string(), message.to_string(), served_by.to_string());
                    let id = blocking(move || {
                        let c = conn.lock().expect("sqlite lock");
                        c.execute("INSERT INTO messages (author, message, created_ms, served_by) VALUES (?1, ?2, ?3, ?4)", (a, m, created_ms, s))?;
                        Ok(c.last_insert_rowid() as u64)
                    })
                    .await?;
                    (id, None)
                }
            };
            Ok(Written { message: Message { id, author: author.into(), message: message.into(), created_ms, served_by: served_by.into() }, gtid })
        })
        .await
    }

    /// The newest messages first, and the server that answered. Reads go to a replica
    /// whose lag is under the bound and, when `after_gtid` is given (the client's last
    /// write), that has applied it; otherwise to the primary.
    pub async fn list_messages(
        &self,
        limit: u32,
        after_gtid: Option<&str>,
    ) -> Result<(Vec<Message>, String), StorageError> {
        timed(async {
            self.ensure_schema().await?;
            match &self.backend {
                Backend::MySql(cluster) => {
                    for m in cluster.fresh_replicas() {
                        if let Ok(Ok(Some(rows))) = tokio::time::timeout(Duration::from_secs(1), read_from(m, limit, after_gtid)).await {
                            return Ok((rows, m.name.clone()));
                        }
                    }
                    let primary = cluster.primary_member();
                    let rows = read_from(primary, limit, None).await?.unwrap_or_default();
                    Ok((rows, primary.name.clone()))
                }
                Backend::Sqlite(conn) => {
                    let conn = conn.clone();
                    let rows = blocking(move || {
                        let c = conn.lock().expect("sqlite lock");
                        let mut stmt = c.prepare("SELECT id, author, message, created_ms, served_by FROM messages ORDER BY id DESC LIMIT ?1")?;
                        let rows = stmt.query_map([limit], |r| {
                            Ok(Message { id: r.get::<_, i64>(0)? as u64, author: r.get(1)?, message: r.get(2)?, created_ms: r.get(3)?, served_by: r.get(4)? })
                        })?;
                        Ok(rows.collect::<Result<Vec<_>, _>>()?)
                    })
                    .await?;
                    Ok((rows, "sqlite".to_string()))
                }
            }
        })
        .await
    }

    /// Closes the connections; MySQL gets a clean goodbye instead of a reset.
    pub async fn close(self) {
        if let Backend::MySql(cluster) = self.backend {
            for m in cluster.members {
                let _ = m.pool.disconnect().await;
            }
        }
    }
}

/// MariaDB's errors for a write refused by a read-only server: ER_OPTION_PREVENTS_STATEMENT
/// (`--read-only`) and ER_READ_ONLY_MODE.
const READ_ONLY_ERRORS: [u16; 2] = [1290, 1836];

/// Why an insert failed: before a connection existed (nothing was sent), or after.
enum Insert {
    NotConnected(mysql_async::Error),
    Failed(mysql_async::Error),
}

/// Inserts one message on `m`: its id and the GTID of the transaction.
async fn insert(
    m: &Member,
    author: &str,
    message: &str,
    created_ms: i64,
    served_by: &str,
) -> Result<(u64, Option<String>), Insert> {
    let mut conn = m.pool.get_conn().await.map_err(Insert::NotConnected)?;
    conn.exec_drop(
        "INSERT INTO messages (author, message, created_ms, served_by) VALUES (?, ?, ?, ?)",
        (author, message, created_ms, served_by),
    )
    .await
    .map_err(Insert::Failed)?;
    let id = conn.last_insert_id().unwrap_or(0);
    let gtid: Option<String> = conn
        .query_first("SELECT @@last_gtid")
        .await
        .map_err(Insert::Failed)?;
    Ok((id, gtid.filter(|g| !g.is_empty())))
}

/// Reads the messages from one server; `None` if it has not applied `after_gtid` yet.
async fn read_from(
    m: &Member,
    limit: u32,
    after_gtid: Option<&str>,
) -> Result<Option<Vec<Message>>, mysql_async::Error> {
    let mut conn = m.pool.get_conn().await?;
    if let Some(gtid) = after_gtid {
        let waited: Option<i64> = conn
            .exec_first("SELECT MASTER_GTID_WAIT(?, 0)", (gtid,))
            .await?;
        if waited != Some(0) {
            return Ok(None);
        }
    }
    let rows: Vec<(u64, String, String, i64, String)> =
        conn.exec("SELECT id, author, message, created_ms, served_by FROM messages ORDER BY id DESC LIMIT ?", (limit,)).await?;
    Ok(Some(
        rows.into_iter()
            .map(|(id, author, message, created_ms, served_by)| Message {
                id,
                author,
                message,
                created_ms,
                served_by,
            })
            .collect(),
    ))
}

impl Cluster {
    fn primary(&self) -> String {
        self.primary.read().expect("primary lock").clone()
    }

    fn primary_member(&self) -> &Member {
        let name = self.primary();
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or(&self.members[0])
    }

    /// Replicas whose lag is known and under the bound, starting from the next in turn.
    fn fresh_replicas(&self) -> Vec<&Member> {
        let primary = self.primary();
        let fresh: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| {
                m.name != primary
                    && m.lag
                        .lock()
                        .expect("lag lock")
                        .is_some_and(|l| l <= self.max_lag)
            })
            .collect();
        if fresh.is_empty() {
            return fresh;
        }
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed) % fresh.len();
        fresh[start..]
            .iter()
            .chain(fresh[..start].iter())
            .copied()
            .collect()
    }

    /// Takes the primary from `cluster.json` if a promotion named one of the members.
    fn refresh_primary(&self) {
        #[derive(serde::Deserialize)]
        struct State {
            primary: Option<String>,
        }
        let named = std::fs::read(&self.cluster_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .and_then(|s| s.primary);
        let wanted = named
            .filter(|p| self.members.iter().any(|m| m.name == *p))
            .unwrap_or_else(|| self.designed_primary.clone());
        let mut current = self.primary.write().expect("primary lock");
        if *current != wanted {
            eprintln!("app: the primary database is now {wanted} (was {current})");
            *current = wanted;
        }
    }
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| StorageError::Timeout(QUERY_TIMEOUT))?
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("storage task panicked")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
