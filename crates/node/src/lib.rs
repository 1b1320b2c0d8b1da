//! A node is one server of a design, run as one process (`webstack node`): it binds the
//! server's listeners on the server's own address and runs its components until told to
//! stop. Killing the node's process is losing the server.
//!
//! Architecture invariant: the node is the only crate that turns a design into component
//! configurations; the components themselves (dns, web, app, database) never see a design.

mod app;
mod cluster;
mod collector;
mod database;
mod failover;
mod firewall;
mod floating;
mod json_file;
mod layout;
mod load_balancer;
mod monitoring;
mod pool;
mod reload;
mod status;
mod tls;
mod web;

pub use reload::{plan as reload_plan, Plan as ReloadPlan};
pub use status::{CertificateStatus, FloatingStatus, ReloadStatus};
pub use tls::{check_certificate_files, site_names};

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Design, DNS_PROCESS_NAME};

pub use app::{Release, INITIAL_VERSION};
pub use cluster::{
    current_primary, replication_settings, ClusterState, FailoverRecord, REPLICATION_USER,
};
pub use layout::{default_state_dir, StackLayout};
pub use status::{read_status, ComponentState, ComponentStatus, NodeStatus, StatusFile};
pub use webstack_database::default_cache_dir;

/// The application's database and user names, the same on every database server.
pub const APP_DATABASE: &str = "foobar";
pub const APP_DB_USER: &str = "foobar";

/// What a node needs to run one server.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub design: Design,
    /// A server of the design, or `dns` for the design's name server.
    pub server: String,
    pub layout: StackLayout,
    pub cache_dir: PathBuf,
}

/// Runs the server until `shutdown` is cancelled, then stops every component and returns.
/// Listeners are bound before anything starts, so a taken port fails the node at once.
pub async fn run(
    opts: NodeOptions,
    shutdown: CancellationToken,
    designs: tokio::sync::mpsc::UnboundedReceiver<Design>,
) -> Result<()> {
    let dir = opts.layout.server_dir(&opts.server);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let status = Arc::new(StatusFile::new(
        opts.layout.node_status(&opts.server),
        &opts.server,
    ));
    // Components stop in tiers, each after the one in front of it has finished: the
    // floating IP first (it hands the address over and passes on what it accepted),
    // then the fronts (load balancer, web server, collector), so nothing new arrives and
    // what is in flight completes; then the app server those requests were using; then
    // the database under it; the agent last, to send the final records.
    let mut tiers = Tiers::new();
    let mut reloadable = reload::Reloadable::default();

    if let Some(address) = opts.design.dns.name_server(&opts.server) {
        let dns = &opts.design.dns;
        monitoring::install(&opts.server, dns.monitoring.as_ref());
        let (tasks, token) = tiers.tier(FRONT);
        start_dns(&opts, address, &status, tasks, &token).await?;
        if let Some(m) = &dns.monitoring {
            let (tasks, token) = tiers.tier(AGENT);
            monitoring::start(&opts, &opts.server, address, m, &status, tasks, &token)?;
        }
    } else {
        let Some(server) = opts.design.server(&opts.server) else {
            let names: Vec<&str> = opts
                .design
                .servers
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            bail!(
                "the design has no server {:?} (servers: {}, and {DNS_PROCESS_NAME})",
                opts.server,
                names.join(", ")
            );
        };
        firewall::install(&opts.design, &server.name, &status);
        monitoring::install(&server.name, server.monitoring.as_ref());
        if let Some(db) = &server.database {
            let (tasks, token) = tiers.tier(DATA);
            reloadable.database = Some(database::start(
                &opts, server, db.port, &status, tasks, &token,
            )?);
        }
        if let Some(app) = &server.app {
            let (tasks, token) = tiers.tier(APP);
            app::start(&opts, server, app, &dir, &status, tasks, &token)?;
        }
        if let Some(web) = &server.web {
            let (tasks, token) = tiers.tier(FRONT);
            reloadable.web = Some(web::start(
                &opts, server, web, &dir, &status, tasks, &token,
            )?);
        }
        if let Some(lb) = &server.load_balancer {
            let (tasks, token) = tiers.tier(FRONT);
            let (doors, lb) = load_balancer::start(&opts, server, lb, &status, tasks, &token)?;
            reloadable.load_balancer = Some(lb);
            if let Some(f) = opts.design.floating_ip_of(&server.name) {
                let (tasks, token) = tiers.tier(ADDRESS);
                floating::start(&opts, server, f, doors, &status, tasks, &token)?;
            }
        }
        if let Some(c) = &server.collector {
            let (tasks, token) = tiers.tier(FRONT);
            collector::start(&opts.design, server, c, &status, tasks, &token)?;
        }
        if let Some(m) = &server.monitoring {
            let (tasks, token) = tiers.tier(AGENT);
            monitoring::start(
                &opts,
                &server.name,
                server.address,
                m,
                &status,
                tasks,
                &token,
            )?;
        }
    }
    eprintln!(
        "node {}: all components started (pid {})",
        opts.server,
        std::process::id()
    );
    tokio::spawn(reloadable.run(
        opts.design.clone(),
        opts.server.clone(),
        designs,
        status.clone(),
        shutdown.clone(),
    ));

    // A component that fails takes the node down with it: a server with a dead web
    // server and a live database is harder to reason about than a dead server.
    let mut failure = None;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        joined = tiers.first_to_end() => {
            failure = Some(match joined {
                Ok(Ok(())) => anyhow::anyhow!("a component stopped by itself"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a component panicked: {e}"),
            });
            shutdown.cancel();
        }
    }
    tiers.stop_in_order(&opts.server).await;
    eprintln!("node {}: stopped", opts.server);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

const ADDRESS: usize = 0;
const FRONT: usize = 1;
const APP: usize = 2;
const DATA: usize = 3;
const AGENT: usize = 4;

/// The node's components by the order they stop in, each tier with its own stop signal.
struct Tiers {
    sets: [JoinSet<Result<()>>; 5],
    tokens: [CancellationToken; 5],
}

impl Tiers {
    fn new() -> Tiers {
        Tiers {
            sets: std::array::from_fn(|_| JoinSet::new()),
            tokens: std::array::from_fn(|_| CancellationToken::new()),
        }
    }

    fn tier(&mut self, tier: usize) -> (&mut JoinSet<Result<()>>, CancellationToken) {
        (&mut self.sets[tier], self.tokens[tier].clone())
    }

    /// The first component task to end, in any tier (pending while none runs).
    async fn first_to_end(&mut self) -> Result<Result<()>, tokio::task::JoinError> {
        let [a, b, c, d, e] = &mut self.sets;
        tokio::select! {
            Some(j) = a.join_next(), if !a.is_empty() => j,
            Some(j) = b.join_next(), if !b.is_empty() => j,
            Some(j) = c.join_next(), if !c.is_empty() => j,
            Some(j) = d.join_next(), if !d.is_empty() => j,
            Some(j) = e.join_next(), if !e.is_empty() => j,
            else => std::future::pending().await,
        }
    }

    /// Stops each tier and waits for it before the next.
    async fn stop_in_order(&mut self, node: &str) {
        for (set, token) in self.sets.iter_mut().zip(&self.tokens) {
            token.cancel();
            while let Some(joined) = set.join_next().await {
                if let Ok(Err(e)) = joined {
                    eprintln!("node {node}: {e:#}");
                }
            }
        }
    }
}

/// A name server of the zone: the primary (`dns`, from the design) or a secondary
/// (`dns2`, …, by zone transfer from the primary, its copy kept in its server folder).
async fn start_dns(
    opts: &NodeOptions,
    address: IpAddr,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let design = &opts.design;
    let addr = SocketAddr::new(address, design.dns.port);
    let tcp = webstack_net::Listener::bind(addr)?.into_tokio();
    let udp = webstack_net::bind_udp(addr).await?;
    status.add("dns", vec![addr], ComponentState::Ready);
    let counts = Arc::new(webstack_dns::AnswerCounts::default());
    monitoring::watch_dns(counts.clone());
    let (design, shutdown) = (design.clone(), shutdown.clone());
    if opts.server == DNS_PROCESS_NAME {
        eprintln!(
            "dns: serving zone {} on {addr} (UDP and TCP) as its primary",
            design.domain
        );
        tasks.spawn(
            async move { Ok(webstack_dns::run(&design, udp, tcp, counts, shutdown).await?) },
        );
    } else {
        let primary = SocketAddr::new(design.dns.address, design.dns.port);
        let store = opts.layout.server_dir(&opts.server).join("zone.axfr");
        eprintln!(
            "dns: serving zone {} on {addr} (UDP and TCP) as a secondary of {primary}",
            design.domain
        );
        tasks.spawn(async move {
            Ok(
                webstack_dns::run_secondary(&design, primary, store, udp, tcp, counts, shutdown)
                    .await?,
            )
        });
    }
    Ok(())
}

pub(crate) fn write_builtin_public(dir: &Path) -> Result<PathBuf> {
    let public = dir.join("codebase/public");
    for (name, bytes) in webstack_app::foobar::PUBLIC_FILES {
        let path = public.join(name);
        std::fs::create_dir_all(path.parent().expect("files are in a folder"))?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(public)
}

pub(crate) fn read_password(layout: &StackLayout) -> Result<String> {
    read_secret(&layout.database_password())
}

pub(crate) fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the secret {} (`webstack up` creates it; on a real host, copy the stack's secrets/ folder there)", path.display())
    })?;
    Ok(text.trim().to_string())
}

/// The design's `[logs]` settings as the rotation every log of this server follows.
pub fn log_rotation(design: &Design) -> webstack_logs::RotationPolicy {
    webstack_logs::RotationPolicy {
        max_bytes: design.logs.max_bytes,
        keep: design.logs.keep,
    }
}
