//! `webstack db`: the database cluster's status, promoting a replica without restarting
//! the stack, and rebuilding a replaced primary as a replica of the new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use webstack_database::replication;
use webstack_net::process::alive;
use webstack_node::{current_primary, read_status, ClusterState, StackLayout};
use webstack_topology::Design;

use crate::faults::{apply, Fault};
use crate::record::StackRecord;

/// How long a promoted replica may take to apply what it already received.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

fn socket(layout: &StackLayout, server: &str) -> PathBuf {
    layout.server_dir(server).join("database/mysqld.sock")
}

pub(crate) fn node_alive(layout: &StackLayout, server: &str) -> bool {
    StackRecord::read(layout)
        .ok()
        .flatten()
        .and_then(|r| r.nodes.into_iter().find(|n| n.server == server))
        .is_some_and(|n| alive(n.pid))
}

/// The database servers of the design, checking that `server` is one of them.
fn cluster_of(design: &Design, server: &str) -> Result<(String, Vec<String>)> {
    match design.server(server) {
        None => bail!("the design has no server {server:?}"),
        Some(s) if s.database.is_none() => bail!("server {server} runs no database"),
        Some(_) => Ok(design.database_cluster(server).expect("it runs a database")),
    }
}

/// A table of every database server: role, GTID position, lag, semi-sync state.
pub async fn status(design: &Design, layout: &StackLayout) -> Result<String> {
    let state = ClusterState::read(&layout.cluster_file());
    let mut rows = vec![[
        "SERVER".to_string(),
        "ROLE".into(),
        "GTID POSITION".into(),
        "LAG".into(),
        "SEMI-SYNC".into(),
        "REPLICATING".into(),
        "NOTE".into(),
    ]];
    for s in design.servers.iter().filter(|s| s.database.is_some()) {
        let live = if node_alive(layout, &s.name) {
            match tokio::time::timeout(Duration::from_secs(3), async {
                let mut conn = replication::root_conn(&socket(layout, &s.name)).await?;
                let st = replication::status(&mut conn).await;
                let _ = conn.disconnect().await;
                st
            })
            .await
            {
                Ok(Ok(st)) => Ok(st),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer".to_string()),
            }
        } else {
            Err("the server is down".to_string())
        };
        let fenced = state.fenced.contains(&s.name);
        let row = match live {
            Ok(st) => {
                let replicating = match (st.io_running, st.sql_running) {
                    (Some(io), Some(sql)) => format!(
                        "io {} sql {}",
                        if io { "yes" } else { "NO" },
                        if sql { "yes" } else { "NO" }
                    ),
                    _ => "-".into(),
                };
                let semi = match st.semi_sync.as_deref() {
                    Some("off") => "off (async)".to_string(),
                    Some(v) => v.to_string(),
                    None => "-".into(),
                };
                [
                    s.name.clone(),
                    if fenced {
                        "fenced".into()
                    } else {
                        st.role.clone()
                    },
                    st.gtid_position.clone(),
                    st.lag_ms
                        .map(|l| format!("{l:.0} ms"))
                        .unwrap_or_else(|| "-".into()),
                    semi,
                    replicating,
                    st.last_error.clone().unwrap_or_default(),
                ]
            }
            Err(why) => {
                let last = read_status(&layout.node_status(&s.name))
                    .and_then(|n| n.components.into_iter().find(|c| c.kind == "database"))
                    .and_then(|c| c.replication)
                    .map(|r| format!("last seen as {} at {}", r.role, r.gtid_position))
                    .unwrap_or_default();
                [
                    s.name.clone(),
                    if fenced {
                        "fenced".into()
                    } else {
                        "down".into()
                    },
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("{why} {last}").trim().to_string(),
                ]
            }
        };
        rows.push(row);
    }
    let mut out = crate::status::table(&rows);
    let auto = design
        .servers
        .iter()
        .find_map(|s| s.database.as_ref()?.automatic_failover.clone());
    match &auto {
        Some(a) => out.push_str(&format!(
            "automatic failover: on (a primary unanswered for {} ms, with the app servers agreeing; none within {} s of the last)\n",
            a.after.as_millis(),
            a.hold_off.as_secs()
        )),
        None => out.push_str("automatic failover: off (`webstack db promote SERVER` after a primary fails)\n"),
    }
    if let Some(f) = &state.last_failover {
        let ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(f.at))
            .unwrap_or(0);
        out.push_str(&format!(
            "last automatic failover: {} → {}, {ago} s ago, because {}\n",
            f.from,
            f.to,
            f.reasons.join("; ")
        ));
    }
    Ok(out)
}

/// Promotes a replica to primary while the stack runs: it applies everything it received,
/// stops replicating and takes writes; the old primary is fenced read-only (now if it is
/// alive, at its next start if not); the other replicas follow the new primary; the app
/// servers find it through `cluster.json`.
pub async fn promote(design: &Design, layout: &StackLayout, server: &str) -> Result<Vec<String>> {
    let (_, replicas) = cluster_of(design, server)?;
    let mut state = ClusterState::read(&layout.cluster_file());
    let old = current_primary(design, &state, server).expect("a database server has a cluster");
    if old == server {
        bail!(
            "{server} is already the primary; promote one of its replicas ({})",
            replicas.join(", ")
        );
    }
    if state.fenced.contains(&server.to_string()) {
        bail!("{server} is fenced (a former primary); rebuild it first: `webstack db rebuild {server}`");
    }
    if !node_alive(layout, server) {
        bail!("{server} is not running; start it first: `webstack start {server}`");
    }
    let mut said = Vec::new();
    let position = replication::promote(&socket(layout, server), APPLY_TIMEOUT)
        .await
        .with_context(|| format!("promoting {server}"))?;
    said.push(format!(
        "{server} applied everything it had received (GTID {position}) and now takes writes"
    ));

    let fenced_now =
        node_alive(layout, &old) && replication::fence(&socket(layout, &old)).await.is_ok();
    said.push(if fenced_now {
        format!("{old} (the old primary) is fenced: read-only now")
    } else {
        format!("{old} (the old primary) is down; it stays fenced (read-only) when it comes back, until `webstack db rebuild {old}`")
    });
    state.primary = Some(server.to_string());
    if !state.fenced.contains(&old) {
        state.fenced.push(old.clone());
    }

    let others: Vec<String> = replicas
        .iter()
        .filter(|r| **r != server && !state.fenced.contains(r))
        .cloned()
        .collect();
    repoint(design, layout, &others, server, &mut said).await?;
    state
        .write(&layout.cluster_file())
        .context("cannot write cluster.json")?;
    said.push(wait_for_app_servers(design, layout, server).await);
    Ok(said)
}

/// Points each running server of `members` at `primary` (GTID replication through its own
/// relay); a server that is down follows when it starts.
async fn repoint(
    design: &Design,
    layout: &StackLayout,
    members: &[String],
    primary: &str,
    said: &mut Vec<String>,
) -> Result<()> {
    let password = std::fs::read_to_string(layout.replication_password())
        .context("the replication password is missing from the stack's secrets")?;
    for r in members {
        if !node_alive(layout, r) {
            said.push(format!("{r} is down; it follows {primary} when it starts"));
            continue;
        }
        let mut conn = replication::root_conn(&socket(layout, r))
            .await
            .with_context(|| format!("connecting to {r}"))?;
        // Through r's own relay to the new primary, so the connection comes from r's
        // address, as the firewall and the grants expect.
        let relay = design
            .replication_relay(r, primary)
            .context("the replica has no relay to the new primary")?;
        replication::start_replicating(
            &mut conn,
            relay,
            webstack_node::REPLICATION_USER,
            password.trim(),
        )
        .await
        .with_context(|| format!("repointing {r}"))?;
        let _ = conn.disconnect().await;
        said.push(format!("{r} now replicates from {primary}"));
    }
    Ok(())
}

/// How long a switchover waits for the chosen replica's lag to drop below
/// [`SWITCHOVER_MAX_LAG`] before it pauses writes, and then for it to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Writes pause only once the chosen replica is this close behind.
const SWITCHOVER_MAX_LAG_MS: f64 = 1000.0;

/// A planned switchover of a live primary to one of its replicas: the replica must be
/// replicating and close behind; then writes stop on the primary (app servers hold theirs
/// and retry), the replica applies the last of them and opens for writes, the app servers
/// move to it, the old primary becomes its replica (no rebuild: it has nothing the new
/// primary lacks) and the other replicas follow. Returns what happened and how long
/// writes were paused.
pub async fn switchover(
    design: &Design,
    layout: &StackLayout,
    server: &str,
) -> Result<(Vec<String>, Duration)> {
    let (_, replicas) = cluster_of(design, server)?;
    let mut state = ClusterState::read(&layout.cluster_file());
    let old = current_primary(design, &state, server).expect("a database server has a cluster");
    if old == server {
        let others: Vec<String> = design
            .database_members(server)
            .into_iter()
            .filter(|m| *m != server && !state.fenced.contains(m))
            .collect();
        bail!(
            "{server} is already the primary; switch over to one of its replicas ({})",
            others.join(", ")
        );
    }
    if state.fenced.contains(&server.to_string()) {
        bail!("{server} is fenced (a former primary); rebuild it first: `webstack db rebuild {server}`");
    }
    if !node_alive(layout, server) {
        bail!("{server} is not running; start it first: `webstack start {server}`");
    }
    if !node_alive(layout, &old) {
        bail!("the primary {old} is down: a switchover hands over from a live primary; after a crash, fail over with `webstack db promote {server}`");
    }
    // Writes pause only for the last bit of catching up, not for a replica far behind.
    let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let mut conn = replication::root_conn(&socket(layout, server))
            .await
            .with_context(|| format!("connecting to {server}"))?;
        let st = replication::status(&mut conn).await?;
        let _ = conn.disconnect().await;
        let replicating =
            st.role == "replica" && st.io_running == Some(true) && st.sql_running == Some(true);
        // A replica whose I/O thread is between connection attempts (just after start-up,
        // before the primary had made its account) gets until the deadline to connect.
        let reconnecting = st.role == "replica"
            && st.sql_running == Some(true)
            && st.io_running != Some(true)
            && std::time::Instant::now() < deadline;
        if reconnecting {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if !replicating {
            bail!(
                "{server} is not replicating from {old} (role {}, io {:?}, sql {:?}{}); nothing was changed",
                st.role,
                st.io_running,
                st.sql_running,
                st.last_error.map(|e| format!(", {e}")).unwrap_or_default()
            );
        }
        if st.lag_ms.is_some_and(|l| l < SWITCHOVER_MAX_LAG_MS) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!("{server} is {} behind {old}; a switchover waits for a replica less than {SWITCHOVER_MAX_LAG_MS:.0} ms behind; nothing was changed", st.lag_ms.map(|l| format!("{l:.0} ms")).unwrap_or_else(|| "an unknown time".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut said = Vec::new();
    let paused = std::time::Instant::now();
    let position = replication::stop_writes(&socket(layout, &old))
        .await
        .with_context(|| format!("stopping writes on {old}"))?;
    said.push(format!(
        "{old} takes no more writes (read-only at GTID {position}); app servers hold theirs"
    ));
    let caught_up = replication::wait_applied(&socket(layout, server), &position, CATCH_UP_TIMEOUT)
        .await
        .unwrap_or(false);
    if !caught_up {
        replication::resume_writes(&socket(layout, &old)).await?;
        bail!("{server} did not apply {old}'s last writes (GTID {position}) within {CATCH_UP_TIMEOUT:?}; {old} takes writes again and stays the primary");
    }
    let opened = replication::promote(&socket(layout, server), APPLY_TIMEOUT)
        .await
        .with_context(|| format!("opening {server} for writes"))?;
    state.primary = Some(server.to_string());
    state.fenced.retain(|f| *f != old);
    state
        .write(&layout.cluster_file())
        .context("cannot write cluster.json")?;
    let pause = paused.elapsed();
    said.push(format!(
        "{server} applied everything up to GTID {position} and takes writes (GTID {opened})"
    ));
    // The old primary has nothing the new one lacks: it replicates from it as it is.
    let mut followers = vec![old.clone()];
    followers.extend(
        replicas
            .iter()
            .filter(|r| **r != server && **r != old && !state.fenced.contains(r))
            .cloned(),
    );
    repoint(design, layout, &followers, server, &mut said).await?;
    said.push(wait_for_app_servers(design, layout, server).await);
    said.push(format!("writes were paused for {} ms", pause.as_millis()));
    Ok((said, pause))
}

/// Waits (a few seconds at most) until every running app server of the cluster reports
/// the new primary in its `/health`, and says how that went.
async fn wait_for_app_servers(design: &Design, layout: &StackLayout, primary: &str) -> String {
    let apps: Vec<(String, std::net::SocketAddr)> = design
        .servers
        .iter()
        .filter(|s| {
            s.app.as_ref().is_some_and(|a| {
                a.database.as_deref().is_some_and(|d| {
                    design
                        .database_cluster(d)
                        .is_some_and(|(p, r)| p == primary || r.iter().any(|x| x == primary))
                })
            })
        })
        .filter(|s| node_alive(layout, &s.name))
        .map(|s| {
            (
                s.name.clone(),
                std::net::SocketAddr::new(s.address, s.app.as_ref().expect("filtered").port),
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pending = apps.clone();
    while !pending.is_empty() && std::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for (name, addr) in pending {
            if !crate::health::app_reports_database(addr, primary).await {
                still.push((name, addr));
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if pending.is_empty() {
        format!(
            "app servers {} now write to {primary}",
            apps.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("app servers {} have not switched to {primary} yet; they read cluster.json every 250 ms", pending.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))
    }
}

/// Rebuilds a fenced former primary (or any replica) from scratch as a replica of the
/// current primary: its server is stopped, its data directory removed, and it starts
/// again, replicating everything from the new primary's binary log.
pub async fn rebuild(
    design: &Design,
    layout: &StackLayout,
    state_dir: &Path,
    exe: &Path,
    server: &str,
) -> Result<Vec<String>> {
    cluster_of(design, server)?;
    let mut state = ClusterState::read(&layout.cluster_file());
    let primary = current_primary(design, &state, server).expect("a database server has a cluster");
    if primary == server {
        bail!("{server} is the primary; rebuild a replica or a fenced former primary");
    }
    let mut said = Vec::new();
    if node_alive(layout, server) {
        said.push(apply(Fault::Stop, design, layout, state_dir, exe, server).await?);
    }
    let data = layout.server_dir(server).join("database/data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot remove {}", data.display()))?;
    }
    said.push(format!("removed {}'s data directory", server));
    state.fenced.retain(|f| f != server);
    state
        .write(&layout.cluster_file())
        .context("cannot write cluster.json")?;
    said.push(apply(Fault::Start, design, layout, state_dir, exe, server).await?);
    said.push(format!("{server} replicates from {primary}"));
    Ok(said)
}
