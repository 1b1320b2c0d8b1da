//! A node is one server of a design, run as one process (`webstack node`): it binds the
//! server's listeners on the server's own address and runs its components until told to
//! stop. Killing the node's process is losing the server.
//!
//! Architecture invariant: the node is the only crate that turns a design into component
//! configurations; the components themselves (dns, web, app, database) never see a design.

mod app;
mod cluster;
mod collector;
mod firewall;
mod floating;
mod layout;
mod monitoring;
mod pool;
mod status;
mod tls;

pub use status::{CertificateStatus, FloatingStatus};
pub use tls::{check_certificate_files, site_names};

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Codebase, Design, Server, DNS_PROCESS_NAME};

pub use app::{Release, INITIAL_VERSION};
pub use cluster::{current_primary, replication_settings, ClusterState, REPLICATION_USER};
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
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<()> {
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

    if opts.server == DNS_PROCESS_NAME {
        let dns = &opts.design.dns;
        monitoring::install(DNS_PROCESS_NAME, dns.monitoring.as_ref());
        let (tasks, token) = tiers.tier(FRONT);
        start_dns(&opts.design, &status, tasks, &token).await?;
        if let Some(m) = &dns.monitoring {
            let (tasks, token) = tiers.tier(AGENT);
            monitoring::start(
                &opts,
                DNS_PROCESS_NAME,
                dns.address,
                m,
                &status,
                tasks,
                &token,
            )?;
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
            start_database(&opts, server, db.port, &status, tasks, &token)?;
        }
        if let Some(app) = &server.app {
            let (tasks, token) = tiers.tier(APP);
            app::start(&opts, server, app, &dir, &status, tasks, &token)?;
        }
        if let Some(web) = &server.web {
            let (tasks, token) = tiers.tier(FRONT);
            start_web(&opts, server, web, &dir, &status, tasks, &token)?;
        }
        if let Some(lb) = &server.load_balancer {
            let (tasks, token) = tiers.tier(FRONT);
            let doors = start_load_balancer(&opts, server, lb, &status, tasks, &token)?;
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

async fn start_dns(
    design: &Design,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(design.dns.address, design.dns.port);
    let tcp = webstack_net::Listener::bind(addr)?.into_tokio();
    let udp = webstack_net::bind_udp(addr).await?;
    status.add("dns", vec![addr], ComponentState::Ready);
    eprintln!(
        "dns: serving zone {} on {addr} (UDP and TCP)",
        design.domain
    );
    let counts = Arc::new(webstack_dns::AnswerCounts::default());
    monitoring::watch_dns(counts.clone());
    let (design, shutdown) = (design.clone(), shutdown.clone());
    tasks.spawn(async move { Ok(webstack_dns::run(&design, udp, tcp, counts, shutdown).await?) });
    Ok(())
}

fn start_web(
    opts: &NodeOptions,
    server: &Server,
    web: &webstack_topology::Web,
    dir: &Path,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(server.address, web.port);
    let listener = firewall::bind(addr)?;
    let root = match (&web.root, &opts.design.codebase) {
        (Some(root), _) => root.clone(),
        (None, Codebase::Builtin(_)) => write_builtin_public(dir)?,
        (None, Codebase::Path { path, .. }) => path.join("public"),
    };
    let upstreams = web
        .upstreams
        .iter()
        .filter_map(|name| opts.design.server(name))
        .filter_map(|s| s.app.as_ref().map(|a| SocketAddr::new(s.address, a.port)))
        .collect();
    let config = webstack_web::WebConfig {
        server_name: server.name.clone(),
        local_address: server.address,
        root,
        upstreams,
        access_log: Some(dir.join("access.log")),
        log_rotation: log_rotation(&opts.design),
        metrics: monitoring::http(),
        limits: Default::default(),
        proxy: Default::default(),
    };
    status.add("web", vec![addr], ComponentState::Ready);
    eprintln!(
        "web: listening on {addr}, static files from {}, proxying to {:?}",
        config.root.display(),
        config.upstreams
    );
    let https = web
        .tls
        .as_ref()
        .map(|t| tls::start_endpoint(opts, server, "web", t, status, tasks, shutdown))
        .transpose()?;
    if let Some(h) = &https {
        status.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == "web") {
                c.listen.push(h.listener.local_addr());
            }
        });
    }
    let shutdown = shutdown.clone();
    tasks.spawn(async move { Ok(webstack_web::run(config, listener, https, shutdown).await?) });
    Ok(())
}

fn start_load_balancer(
    opts: &NodeOptions,
    server: &Server,
    lb: &webstack_topology::LoadBalancer,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<Vec<floating::Door>> {
    let addr = SocketAddr::new(server.address, lb.port);
    let stats_addr = SocketAddr::new(server.address, lb.stats_port);
    let mut listener = firewall::bind(addr)?;
    let stats = firewall::bind(stats_addr)?;
    // A member of a floating IP also takes the connections it accepts on that address
    // while it is master, through side doors of its listeners.
    let fip = opts.design.floating_ip_of(&server.name);
    let mut doors = Vec::new();
    if fip.is_some() {
        let (door, rx) = floating::door(lb.port);
        listener = listener.with_side_door(rx);
        doors.push(door);
    }
    let backends = lb
        .backends
        .iter()
        .filter_map(|b| {
            let s = opts.design.server(&b.server)?;
            let web = s.web.as_ref()?;
            Some(webstack_load_balancer::BackendConfig {
                name: b.server.clone(),
                addr: SocketAddr::new(s.address, web.port),
                tls_addr: web.tls.as_ref().map(|t| SocketAddr::new(s.address, t.port)),
                weight: b.weight,
                backup: b.backup,
            })
        })
        .collect::<Vec<_>>();
    eprintln!(
        "load balancer: {:?} mode, {:?} over {}, on {addr}; stats on http://{stats_addr}/",
        lb.mode,
        lb.algorithm,
        backends
            .iter()
            .map(|b| format!("{} ({})", b.name, b.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = webstack_load_balancer::LbConfig {
        server_name: server.name.clone(),
        local_address: server.address,
        mode: lb.mode,
        algorithm: lb.algorithm,
        backends,
        maxconn: lb.maxconn,
        retries: lb.retries,
        when_all_down: lb.when_all_down,
        proxy_protocol: lb.proxy_protocol,
        health_check: lb.health_check.clone(),
        timeouts: lb.timeouts.clone(),
        backend_roots: tls::backend_roots(opts, lb)?,
        metrics: monitoring::http(),
        on_pool: Some(pool::publish),
    };
    status.add(
        "load_balancer",
        vec![addr, stats_addr],
        ComponentState::Ready,
    );
    // In http mode TLS ends here; in tcp mode it passes through to the web servers.
    let mut tls_door = |listener: webstack_net::Listener, port: u16| {
        if fip.is_none() {
            return listener;
        }
        let (door, rx) = floating::door(port);
        doors.push(door);
        listener.with_side_door(rx)
    };
    let tls_front = match (&lb.tls, lb.mode) {
        (None, _) => None,
        (Some(t), webstack_topology::LbMode::Http) => {
            let mut https =
                tls::start_endpoint(opts, server, "load_balancer", t, status, tasks, shutdown)?;
            https.listener = tls_door(https.listener, t.port);
            Some(webstack_load_balancer::TlsFront::Terminate(https))
        }
        (Some(t), webstack_topology::LbMode::Tcp) => {
            Some(webstack_load_balancer::TlsFront::PassThrough(tls_door(
                firewall::bind(SocketAddr::new(server.address, t.port))?,
                t.port,
            )))
        }
    };
    if let Some(t) = &lb.tls {
        status.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == "load_balancer") {
                c.listen.push(SocketAddr::new(server.address, t.port));
            }
        });
    }
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        webstack_load_balancer::run(config, listener, tls_front, stats, shutdown).await;
        Ok(())
    });
    Ok(doors)
}

/// Writes the built-in codebase's static files where the web server serves them from.
fn write_builtin_public(dir: &Path) -> Result<PathBuf> {
    let public = dir.join("codebase/public");
    for (name, bytes) in webstack_app::foobar::PUBLIC_FILES {
        let path = public.join(name);
        std::fs::create_dir_all(path.parent().expect("files are in a folder"))?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(public)
}

fn start_database(
    opts: &NodeOptions,
    server: &Server,
    port: u16,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let listen = SocketAddr::new(server.address, port);
    let app_hosts: Vec<IpAddr> = opts
        .design
        .servers
        .iter()
        .filter(|s| {
            s.app
                .as_ref()
                .is_some_and(|a| a.database.as_deref() == Some(server.name.as_str()))
        })
        .map(|s| s.address)
        .collect();
    let config = webstack_database::DatabaseConfig {
        server_name: server.name.clone(),
        listen,
        dir: opts.layout.server_dir(&server.name).join("database"),
        cache_dir: opts.cache_dir.clone(),
        app_user: APP_DB_USER.into(),
        app_password: read_password(&opts.layout)?,
        app_database: APP_DATABASE.into(),
        app_hosts,
        replication: replication_settings(
            &opts.design,
            &opts.layout,
            &server.name,
            read_secret(&opts.layout.replication_password())?,
        ),
        log_rotation: log_rotation(&opts.design),
    };
    // mariadbd listens only on its Unix socket; this is its TCP port, behind the firewall.
    let listener = firewall::bind(listen)?;
    // Its replication connections to each peer of the cluster leave through a relay of
    // this node, from this server's address (MariaDB cannot bind one).
    let mut listens = vec![listen];
    for peer in opts.design.database_members(&server.name) {
        let Some(relay) = opts
            .design
            .replication_relay(&server.name, &peer)
            .filter(|_| peer != server.name)
        else {
            continue;
        };
        let Some(target) = opts
            .design
            .server(&peer)
            .and_then(|p| Some(SocketAddr::new(p.address, p.database.as_ref()?.port)))
        else {
            continue;
        };
        webstack_net::spawn_tcp_forward(
            firewall::bind(relay)?,
            server.address,
            target,
            shutdown.clone(),
        );
        listens.push(relay);
    }
    status.add("database", listens, ComponentState::Starting);
    let (status, shutdown) = (status.clone(), shutdown.clone());
    tasks.spawn(async move {
        let events = DatabaseStatus { status };
        Ok(webstack_database::run(config, listener, shutdown, &events).await?)
    });
    Ok(())
}

struct DatabaseStatus {
    status: Arc<StatusFile>,
}

impl webstack_database::DatabaseEvents for DatabaseStatus {
    fn started(&self, pid: u32) {
        self.status
            .set("database", ComponentState::Starting, Some(pid));
    }
    fn ready(&self) {
        let pid = self
            .status
            .snapshot()
            .components
            .iter()
            .find(|c| c.kind == "database")
            .and_then(|c| c.child_pid);
        self.status.set("database", ComponentState::Ready, pid);
    }
    fn stopped(&self) {
        self.status
            .set("database", ComponentState::Restarting, None);
    }
    fn replication(&self, status: webstack_database::ReplicationStatus) {
        self.status.set_replication("database", status);
    }
}

fn read_password(layout: &StackLayout) -> Result<String> {
    read_secret(&layout.database_password())
}

fn read_secret(path: &Path) -> Result<String> {
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
