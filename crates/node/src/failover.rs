//! Automatic database failover, on every database server of a cluster whose primary has
//! `automatic_failover`: while this server is a replica it probes the primary every
//! 200 ms (a MySQL handshake from its own address); when the primary stops answering it
//! asks each app server of the cluster whether it still reaches it (their `/health`) and
//! reads the other replicas' positions, and `webstack_database::failover::Detector`
//! decides. A promotion applies what the replica received, opens it for writes and
//! records the new primary (and the old one fenced) in `cluster.json`, where the app
//! servers and the other replicas find it; a replica whose primary changed repoints
//! itself. Every verdict that changes is logged with its reasons.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_database::failover::{Detector, Round, Verdict};
use webstack_database::replication;
use webstack_topology::{AutomaticFailover, Design};

use crate::cluster::{current_primary, ClusterState, FailoverRecord};
use crate::{read_status, NodeOptions, REPLICATION_USER};

const ROUND: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
const APP_TIMEOUT: Duration = Duration::from_millis(800);

/// The automatic failover settings of `server`'s cluster, if it has them.
pub(crate) fn settings(design: &Design, server: &str) -> Option<AutomaticFailover> {
    let (primary, replicas) = design.database_cluster(server)?;
    if replicas.is_empty() {
        return None;
    }
    design
        .server(&primary)?
        .database
        .as_ref()?
        .automatic_failover
        .clone()
}

pub(crate) fn start(
    opts: &NodeOptions,
    server: &str,
    settings: AutomaticFailover,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) {
    eprintln!(
        "database: automatic failover is on: a primary unanswered for {} ms, with the app servers agreeing, is replaced by its most advanced replica",
        settings.after.as_millis()
    );
    let watch = Watch {
        opts: opts.clone(),
        me: server.to_string(),
        detector: Detector::new(settings.after, settings.hold_off),
        following: None,
        last: None,
        down_since: None,
        armed: false,
    };
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = watch.run() => {}
        }
        Ok(())
    });
}

struct Watch {
    opts: NodeOptions,
    me: String,
    detector: Detector,
    /// The primary this server replicates from, as far as it has repointed itself.
    following: Option<String>,
    /// The last verdict logged.
    last: Option<Verdict>,
    down_since: Option<Instant>,
    /// The primary has answered once since this watch began (or since it changed): a
    /// primary never seen alive (the stack is starting) is not failed over.
    armed: bool,
}

impl Watch {
    fn socket(&self, server: &str) -> std::path::PathBuf {
        self.opts
            .layout
            .server_dir(server)
            .join("database/mysqld.sock")
    }

    async fn run(mut self) {
        loop {
            tokio::time::sleep(ROUND).await;
            let design = &self.opts.design;
            let state = ClusterState::read(&self.opts.layout.cluster_file());
            let Some(primary) = current_primary(design, &state, &self.me) else {
                return;
            };
            if primary == self.me || state.fenced.contains(&self.me) {
                self.detector = Detector::new(self.detector.after, self.detector.hold_off);
                self.following = None;
                self.armed = false;
                continue;
            }
            if self.following.as_deref() != Some(primary.as_str()) {
                if self.following.is_some() {
                    self.repoint(&primary).await;
                }
                self.following = Some(primary.clone());
                self.armed = false;
            }
            let answers = self.probe(&primary).await;
            if !self.armed {
                if answers {
                    self.armed = true;
                    eprintln!("failover: watching {primary} (it answers)");
                }
                continue;
            }
            if !answers {
                self.down_since.get_or_insert_with(Instant::now);
            }
            let round = if answers {
                self.down_since = None;
                Round {
                    now: Instant::now(),
                    primary_answers: true,
                    apps: Vec::new(),
                    me: (self.me.clone(), String::new()),
                    others: Vec::new(),
                    since_last_failover: None,
                }
            } else {
                self.gather(&primary, &state).await
            };
            let verdict = self.detector.observe(&round);
            self.log(&primary, &verdict);
            if let Verdict::Promote(why) = verdict {
                self.promote(&primary, why).await;
            }
        }
    }

    /// A MySQL handshake from this server's address: the primary's first packet.
    async fn probe(&self, primary: &str) -> bool {
        let Some(addr) = db_addr(&self.opts.design, primary) else {
            return false;
        };
        let local = self
            .opts
            .design
            .server(&self.me)
            .map(|s| s.address)
            .expect("the node's own server");
        let io = async {
            let mut s = webstack_net::connect_from(local, addr).await.ok()?;
            let mut first = [0u8; 5];
            s.read_exact(&mut first).await.ok()?;
            Some(first[4] == 10)
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, io).await,
            Ok(Some(true))
        )
    }

    /// What the app servers and the other replicas know, once the primary is silent.
    async fn gather(&self, primary: &str, state: &ClusterState) -> Round {
        let design = &self.opts.design;
        let members = design.database_members(&self.me);
        let local = design
            .server(&self.me)
            .map(|s| s.address)
            .expect("own server");
        let mut apps = Vec::new();
        for s in design.servers.iter().filter(|s| {
            s.app
                .as_ref()
                .and_then(|a| a.database.as_ref())
                .is_some_and(|d| members.contains(d))
        }) {
            let port = s.app.as_ref().expect("filtered").port;
            let view = app_view(local, SocketAddr::new(s.address, port), primary).await;
            apps.push((s.name.clone(), view));
        }
        let position = async {
            let mut conn = replication::root_conn(&self.socket(&self.me)).await.ok()?;
            let st = replication::status(&mut conn).await.ok();
            let _ = conn.disconnect().await;
            st.map(|s| s.gtid_position)
        };
        let mine = tokio::time::timeout(Duration::from_secs(1), position)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let others = members
            .iter()
            .filter(|m| **m != self.me && **m != primary && !state.fenced.contains(m))
            .map(|m| {
                let pos = read_status(&self.opts.layout.node_status(m))
                    .and_then(|n| n.components.into_iter().find(|c| c.kind == "database"))
                    .and_then(|c| c.replication)
                    .map(|r| r.gtid_position);
                (m.clone(), pos)
            })
            .collect();
        let since_last_failover = state
            .last_failover
            .as_ref()
            .map(|f| Duration::from_secs(unix_now().saturating_sub(f.at)));
        Round {
            now: Instant::now(),
            primary_answers: false,
            apps,
            me: (self.me.clone(), mine),
            others,
            since_last_failover,
        }
    }

    fn log(&mut self, primary: &str, verdict: &Verdict) {
        let same_kind =
            |a: &Verdict, b: &Verdict| std::mem::discriminant(a) == std::mem::discriminant(b);
        let changed = match (&self.last, verdict) {
            (None, Verdict::Healthy) => false,
            (Some(last), Verdict::Hold(_)) => last != verdict,
            (Some(last), v) => !same_kind(last, v),
            (None, _) => true,
        };
        if changed {
            match verdict {
                Verdict::Healthy => eprintln!("failover: {primary} answers again; no failover"),
                Verdict::Suspect(why) => eprintln!("failover: suspect: {why}"),
                Verdict::Hold(why) => eprintln!("failover: not failing over from {primary}: {why}"),
                Verdict::Promote(why) => {
                    eprintln!(
                        "failover: promoting {} in place of {primary}: {}",
                        self.me,
                        why.join("; ")
                    )
                }
            }
        }
        self.last = Some(verdict.clone());
    }

    async fn promote(&mut self, old: &str, why: Vec<String>) {
        let started = Instant::now();
        let position =
            match replication::promote(&self.socket(&self.me), Duration::from_secs(30)).await {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "failover: promoting {} failed: {e}; trying again next round",
                        self.me
                    );
                    return;
                }
            };
        let cluster_file = self.opts.layout.cluster_file();
        let mut state = ClusterState::read(&cluster_file);
        state.primary = Some(self.me.clone());
        if !state.fenced.iter().any(|f| f == old) {
            state.fenced.push(old.to_string());
        }
        state.last_failover = Some(FailoverRecord {
            at: unix_now(),
            from: old.to_string(),
            to: self.me.clone(),
            reasons: why,
        });
        if let Err(e) = state.write(&cluster_file) {
            eprintln!("failover: cannot write {}: {e}", cluster_file.display());
            return;
        }
        let since_death = self
            .down_since
            .map(|d| d.elapsed().as_millis())
            .unwrap_or(0);
        eprintln!(
            "failover: {} is the primary (GTID {position}), {} ms after {old} stopped answering ({} ms to promote); {old} is fenced until `webstack db rebuild {old}`",
            self.me,
            since_death,
            started.elapsed().as_millis()
        );
        self.following = None;
        self.down_since = None;
    }

    /// Replicates from `primary` now that another replica took over.
    async fn repoint(&self, primary: &str) {
        let Some(relay) = self.opts.design.replication_relay(&self.me, primary) else {
            return;
        };
        let password = match crate::read_secret(&self.opts.layout.replication_password()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("failover: cannot follow {primary}: {e:#}");
                return;
            }
        };
        let done = async {
            let mut conn = replication::root_conn(&self.socket(&self.me)).await?;
            replication::start_replicating(&mut conn, relay, REPLICATION_USER, &password).await?;
            conn.disconnect().await
        };
        match done.await {
            Ok(()) => eprintln!(
                "failover: {} now replicates from {primary}, the new primary",
                self.me
            ),
            Err(e) => eprintln!("failover: {} cannot replicate from {primary}: {e}", self.me),
        }
    }
}

fn db_addr(design: &Design, server: &str) -> Option<SocketAddr> {
    let s = design.server(server)?;
    Some(SocketAddr::new(s.address, s.database.as_ref()?.port))
}

/// An app server's view of the primary, from its `/health`: `Some(true)` if it reaches
/// `primary`, `Some(false)` if it cannot, `None` if it does not answer.
async fn app_view(local: std::net::IpAddr, app: SocketAddr, primary: &str) -> Option<bool> {
    let io = async {
        let mut s = webstack_net::connect_from(local, app).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: webstack\r\nUser-Agent: webstack-failover\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let body = text.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let names_it = v["database"] == primary;
        Some(names_it && v["database_reachable"] == true)
    };
    tokio::time::timeout(APP_TIMEOUT, io).await.ok().flatten()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
