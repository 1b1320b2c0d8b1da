//! Primary-replica replication between managed MariaDB servers: the configuration each
//! role gets, the replication user, the heartbeat that measures lag, and the operations a
//! promotion is made of (drain the relay log, stop replicating, open for writes, fence the
//! old primary, repoint the other replicas).
//!
//! Semi-synchronous replication waits AFTER_SYNC: a commit is acknowledged to the client
//! only once a replica has the transaction in its relay log, so promoting that replica
//! loses no acknowledged write. If no replica answers within the timeout, the primary
//! goes on asynchronously (and says so in its log and status) rather than stop writing.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DatabaseError;

/// What a database server is in its cluster right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "role")]
pub enum ReplicationRole {
    /// Takes writes. `replica_hosts` are the addresses replicas connect from: every member
    /// of the cluster, since any of them may replicate from any other after a promotion.
    Primary { replica_hosts: Vec<IpAddr> },
    /// Replicates from the primary at that address, read-only.
    Replica { primary: SocketAddr },
    /// A former primary that was replaced while it was down: read-only and replicating
    /// from no one until it is rebuilt, so it can never serve stale or divergent writes.
    Fenced,
}

#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// Unique in the cluster: webstack derives it from the server's address.
    pub server_id: u32,
    pub role: ReplicationRole,
    pub user: String,
    pub password: String,
    pub semi_sync_timeout: Duration,
}

/// The replication state of one server, as its node reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicationStatus {
    /// `primary`, `replica` or `fenced`, as the server itself says (read_only, slave status).
    pub role: String,
    /// `@@gtid_current_pos`.
    pub gtid_position: String,
    /// Replicas: age of the newest heartbeat applied, in milliseconds.
    pub lag_ms: Option<f64>,
    /// Primaries: `on` while replicas acknowledge, `off` when it fell back to async.
    pub semi_sync: Option<String>,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    pub last_error: Option<String>,
    /// Client connections open (`Threads_connected`).
    #[serde(default)]
    pub connections: Option<u64>,
}

/// The server id of an address (an IPv4 address is a unique 32-bit number already).
pub fn server_id(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).max(1),
        IpAddr::V6(v6) => (u128::from(v6) as u32).max(1),
    }
}

/// The replication part of my.cnf. Every server writes a binary log with GTIDs and has
/// semi-sync enabled on both sides, so any replica can be promoted as it is.
pub fn config_lines(s: &ReplicationSettings) -> String {
    let mut cnf = format!(
        "server_id = {}\n\
         log_bin = mysql-bin\n\
         binlog_format = ROW\n\
         log_slave_updates = ON\n\
         sync_binlog = 1\n\
         relay_log = relay-bin\n\
         gtid_strict_mode = ON\n\
         skip_slave_start = ON\n\
         rpl_semi_sync_master_enabled = ON\n\
         rpl_semi_sync_slave_enabled = ON\n\
         rpl_semi_sync_master_wait_point = AFTER_SYNC\n\
         rpl_semi_sync_master_timeout = {}\n",
        s.server_id,
        s.semi_sync_timeout.as_millis()
    );
    if !matches!(s.role, ReplicationRole::Primary { .. }) {
        cnf.push_str("read_only = ON\n");
    }
    cnf
}

pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A root connection over a server's Unix socket.
pub async fn root_conn(socket: &Path) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("root"));
    mysql_async::Conn::new(opts).await
}

/// On the primary: the replication user (one grant per member address: replicas connect
/// through their node's relay, which connects from the replica's own address, and the
/// accounts replicate to every member for after a promotion) and the heartbeat table.
pub async fn setup_primary(
    conn: &mut mysql_async::Conn,
    s: &ReplicationSettings,
) -> Result<(), mysql_async::Error> {
    let ReplicationRole::Primary { replica_hosts } = &s.role else {
        return Ok(());
    };
    for host in replica_hosts.iter().map(|h| h.to_string()) {
        let account = format!("{}@{}", quote_str(&s.user), quote_str(&host));
        let password = quote_str(&s.password);
        conn.query_drop(format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"
        ))
        .await?;
        conn.query_drop(format!("ALTER USER {account} IDENTIFIED BY {password}"))
            .await?;
        conn.query_drop(format!(
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {account}"
        ))
        .await?;
    }
    conn.query_drop("CREATE DATABASE IF NOT EXISTS webstack")
        .await?;
    conn.query_drop("CREATE TABLE IF NOT EXISTS webstack.heartbeat (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB").await?;
    Ok(())
}

/// On a replica: replicate from `primary` by GTID, from where it left off.
///
/// A replica killed at the wrong moment can restart with a transaction in its binary log
/// (it logs what it applies) that `mysql.gtid_slave_pos` does not list; replicating from
/// the table's position would then apply it twice, which strict GTID mode refuses. Since
/// replicas never write locally, everything in their binary log came from the primary and
/// was committed, so the log's position is the one to resume from.
pub async fn start_replicating(
    conn: &mut mysql_async::Conn,
    primary: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), mysql_async::Error> {
    conn.query_drop("STOP SLAVE").await?;
    let binlog: Option<String> = conn.query_first("SELECT @@gtid_binlog_pos").await?;
    let slave: Option<String> = conn.query_first("SELECT @@gtid_slave_pos").await?;
    let (binlog, slave) = (binlog.unwrap_or_default(), slave.unwrap_or_default());
    if !binlog.is_empty() && binlog != slave && gtid_covers(&binlog, &slave) {
        conn.exec_drop("SET GLOBAL gtid_slave_pos = ?", (binlog.as_str(),))
            .await?;
    }
    conn.query_drop(format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
        quote_str(&primary.ip().to_string()),
        primary.port(),
        quote_str(user),
        quote_str(password)
    ))
    .await?;
    conn.query_drop("SET GLOBAL read_only = ON").await?;
    conn.query_drop("START SLAVE").await
}

/// The server's replication state, asked of the server itself.
pub async fn status(conn: &mut mysql_async::Conn) -> Result<ReplicationStatus, mysql_async::Error> {
    let gtid: Option<String> = conn.query_first("SELECT @@gtid_current_pos").await?;
    let read_only: Option<i64> = conn.query_first("SELECT @@read_only").await?;
    let slave: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await?;
    let connections: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .await?;
    let mut st = ReplicationStatus {
        gtid_position: gtid.unwrap_or_default(),
        connections: connections.map(|(_, n)| n),
        ..Default::default()
    };
    if let Some(row) = slave {
        let text = |name: &str| {
            row.get_opt::<Option<String>, &str>(name)
                .and_then(|r| r.ok())
                .flatten()
        };
        st.role = "replica".into();
        st.io_running = text("Slave_IO_Running").map(|v| v == "Yes");
        st.sql_running = text("Slave_SQL_Running").map(|v| v == "Yes");
        st.last_error = [text("Last_IO_Error"), text("Last_SQL_Error")]
            .into_iter()
            .flatten()
            .find(|e| !e.is_empty());
        let lag: Option<Option<i64>> = conn.query_first("SELECT TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) FROM webstack.heartbeat WHERE id = 1").await.ok().flatten();
        st.lag_ms = lag.flatten().map(|us| us as f64 / 1000.0);
    } else if read_only == Some(1) {
        st.role = "fenced".into();
    } else {
        st.role = "primary".into();
        let semi: Option<(String, String)> = conn
            .query_first("SHOW STATUS LIKE 'Rpl_semi_sync_master_status'")
            .await?;
        st.semi_sync = semi.map(|(_, v)| v.to_ascii_lowercase());
    }
    Ok(st)
}

/// Writes the heartbeat a replica's lag is measured against, only while the server takes
/// writes: root is exempt from read_only, and a beat that landed after a switchover made
/// the server read-only would be a transaction the new primary lacks, which stops the old
/// primary from replicating from it (strict GTID mode). A statement that changes no row is
/// not written to the binary log.
pub async fn beat(conn: &mut mysql_async::Conn) -> Result<(), mysql_async::Error> {
    conn.query_drop(
        "REPLACE INTO webstack.heartbeat (id, ts) SELECT 1, NOW(6) FROM DUAL WHERE @@global.read_only = 0",
    )
    .await
}

/// Promotes a replica: stops fetching, waits until everything it received is applied,
/// forgets its primary and opens for writes.
pub async fn promote(socket: &Path, apply_timeout: Duration) -> Result<String, DatabaseError> {
    let mut conn = root_conn(socket).await.map_err(DatabaseError::Provision)?;
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW SLAVE STATUS")
        .await
        .map_err(DatabaseError::Provision)?;
    if row.is_none() {
        return Err(DatabaseError::Promote(
            "it is not a replica (it replicates from no one)".into(),
        ));
    }
    conn.query_drop("STOP SLAVE IO_THREAD")
        .await
        .map_err(DatabaseError::Provision)?;
    // Everything the replica received (and, with semi-sync, acknowledged) must be applied.
    let deadline = Instant::now() + apply_timeout;
    loop {
        let row: Option<mysql_async::Row> = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(DatabaseError::Provision)?;
        let row = row
            .ok_or_else(|| DatabaseError::Promote("replication vanished while promoting".into()))?;
        let io_pos = row
            .get_opt::<Option<String>, &str>("Gtid_IO_Pos")
            .and_then(|r| r.ok())
            .flatten()
            .unwrap_or_default();
        let sql_running = row
            .get_opt::<Option<String>, &str>("Slave_SQL_Running")
            .and_then(|r| r.ok())
            .flatten()
            .unwrap_or_default()
            == "Yes";
        let applied: Option<String> = conn
            .query_first("SELECT @@gtid_current_pos")
            .await
            .map_err(DatabaseError::Provision)?;
        let applied = applied.unwrap_or_default();
        if io_pos.is_empty() || gtid_covers(&applied, &io_pos) {
            break;
        }
        if !sql_running {
            return Err(DatabaseError::Promote(format!("the replica's SQL thread stopped before applying all it received (applied {applied}, received {io_pos})")));
        }
        if Instant::now() > deadline {
            return Err(DatabaseError::Promote(format!("the replica did not apply all it received within {apply_timeout:?} (applied {applied}, received {io_pos})")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for sql in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = OFF",
    ] {
        conn.query_drop(sql)
            .await
            .map_err(DatabaseError::Provision)?;
    }
    let pos: Option<String> = conn
        .query_first("SELECT @@gtid_current_pos")
        .await
        .map_err(DatabaseError::Provision)?;
    Ok(pos.unwrap_or_default())
}

/// The first step of a planned switchover, on the live primary: no more writes (the app
/// servers hold theirs and retry on the new primary), and the GTID position of the last
/// one, which the new primary must have applied before it opens.
pub async fn stop_writes(socket: &Path) -> Result<String, DatabaseError> {
    let mut conn = root_conn(socket).await.map_err(DatabaseError::Provision)?;
    // Waits for the transactions committing now (and their semi-sync acknowledgement).
    conn.query_drop("SET GLOBAL read_only = ON")
        .await
        .map_err(DatabaseError::Provision)?;
    let pos: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(DatabaseError::Provision)?;
    Ok(pos.unwrap_or_default())
}

/// Undoes [`stop_writes`] when a switchover cannot go on: the primary takes writes again.
pub async fn resume_writes(socket: &Path) -> Result<(), DatabaseError> {
    let mut conn = root_conn(socket).await.map_err(DatabaseError::Provision)?;
    conn.query_drop("SET GLOBAL read_only = OFF")
        .await
        .map_err(DatabaseError::Provision)
}

/// Waits until a replica has applied everything up to `position`; false after `timeout`.
pub async fn wait_applied(
    socket: &Path,
    position: &str,
    timeout: Duration,
) -> Result<bool, DatabaseError> {
    let mut conn = root_conn(socket).await.map_err(DatabaseError::Provision)?;
    let waited: Option<i64> = conn
        .exec_first(
            "SELECT MASTER_GTID_WAIT(?, ?)",
            (position, timeout.as_secs_f64()),
        )
        .await
        .map_err(DatabaseError::Provision)?;
    Ok(waited == Some(0))
}

/// Makes a live former primary read-only, so that no write can land on it any more.
pub async fn fence(socket: &Path) -> Result<(), DatabaseError> {
    let mut conn = root_conn(socket).await.map_err(DatabaseError::Provision)?;
    conn.query_drop("SET GLOBAL read_only = ON")
        .await
        .map_err(DatabaseError::Provision)
}

/// True if GTID position `applied` includes every domain's sequence of `wanted`
/// (`domain-server-seq` lists, comma separated).
pub fn gtid_covers(applied: &str, wanted: &str) -> bool {
    let parse = |s: &str| -> Vec<(u32, u64)> {
        s.split(',')
            .filter_map(|g| {
                let mut p = g.trim().split('-');
                let domain = p.next()?.parse().ok()?;
                let _server = p.next()?;
                let seq = p.next()?.parse().ok()?;
                Some((domain, seq))
            })
            .collect()
    };
    let have = parse(applied);
    parse(wanted)
        .iter()
        .all(|(d, seq)| have.iter().any(|(hd, hs)| hd == d && hs >= seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_compare_per_domain() {
        assert!(gtid_covers("0-1-10", "0-1-10"));
        assert!(gtid_covers("0-2-11", "0-1-10"));
        assert!(!gtid_covers("0-1-9", "0-1-10"));
        assert!(gtid_covers("0-1-10,1-3-4", "1-3-4"));
        assert!(!gtid_covers("0-1-10", "1-3-4"));
        assert!(gtid_covers("0-1-3", ""));
    }

    #[test]
    fn replicas_are_read_only_and_everyone_waits_after_sync() {
        let replica = ReplicationSettings {
            server_id: 7,
            role: ReplicationRole::Replica {
                primary: "127.0.0.1:3306".parse().unwrap(),
            },
            user: "repl".into(),
            password: "p".into(),
            semi_sync_timeout: Duration::from_millis(1500),
        };
        let cnf = config_lines(&replica);
        assert!(
            cnf.contains("read_only = ON")
                && cnf.contains("rpl_semi_sync_master_wait_point = AFTER_SYNC")
                && cnf.contains("rpl_semi_sync_master_timeout = 1500")
        );
        let primary = ReplicationSettings {
            role: ReplicationRole::Primary {
                replica_hosts: vec![],
            },
            ..replica
        };
        assert!(!config_lines(&primary).contains("read_only"));
        assert_eq!(server_id("127.10.1.11".parse().unwrap()), 0x7F0A010B);
    }
}
