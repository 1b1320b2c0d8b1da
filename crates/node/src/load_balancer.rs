//! The load balancer component: its sockets (traffic, TLS, stats) are bound once, and each
//! configuration runs as an instance on duplicates of them, so a reload that changes the
//! backends, weights, algorithm, health checks or limits puts a new instance in service
//! while the old one finishes its requests (`reload::Swap`). The new instance's pool
//! takes the old one's backend states over.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Design, Server};

use crate::reload::{lb_key, LbKey, Swap};
use crate::{firewall, floating, monitoring, pool, tls, ComponentState, NodeOptions, StatusFile};

/// The sockets the instances share.
enum TlsSockets {
    Terminate(webstack_net::http::Https),
    PassThrough(webstack_net::Listener),
}

pub(crate) struct LoadBalancer {
    opts: NodeOptions,
    server: String,
    traffic: webstack_net::Listener,
    tls: Option<TlsSockets>,
    stats: webstack_net::Listener,
    swap: Arc<Swap<LbKey>>,
}

pub(crate) fn start(
    opts: &NodeOptions,
    server: &Server,
    lb: &webstack_topology::LoadBalancer,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<(Vec<floating::Door>, Arc<LoadBalancer>)> {
    let addr = SocketAddr::new(server.address, lb.port);
    let stats_addr = SocketAddr::new(server.address, lb.stats_port);
    let mut traffic = firewall::bind(addr)?;
    let stats = firewall::bind(stats_addr)?;
    // A member of a floating IP also takes the connections it accepts on that address
    // while it is master, through side doors of its listeners.
    let fip = opts.design.floating_ip_of(&server.name);
    let mut doors = Vec::new();
    if fip.is_some() {
        let (door, rx) = floating::door(lb.port);
        traffic = traffic.with_side_door(rx);
        doors.push(door);
    }
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
    let tls_sockets = match (&lb.tls, lb.mode) {
        (None, _) => None,
        (Some(t), webstack_topology::LbMode::Http) => {
            let mut https =
                tls::start_endpoint(opts, server, "load_balancer", t, status, tasks, shutdown)?;
            https.listener = tls_door(https.listener, t.port);
            Some(TlsSockets::Terminate(https))
        }
        (Some(t), webstack_topology::LbMode::Tcp) => Some(TlsSockets::PassThrough(tls_door(
            firewall::bind(SocketAddr::new(server.address, t.port))?,
            t.port,
        ))),
    };
    if let Some(t) = &lb.tls {
        status.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == "load_balancer") {
                c.listen.push(SocketAddr::new(server.address, t.port));
            }
        });
    }
    let (swap, failed) = Swap::new("load balancer", shutdown);
    let me = Arc::new(LoadBalancer {
        opts: opts.clone(),
        server: server.name.clone(),
        traffic,
        tls: tls_sockets,
        stats,
        swap: swap.clone(),
    });
    me.reload(&opts.design)?;
    tasks.spawn(swap.run(failed));
    Ok((doors, me))
}

impl LoadBalancer {
    /// Puts `design`'s configuration in service unless it runs already; true if it did.
    pub(crate) fn reload(&self, design: &Design) -> Result<bool> {
        let server = design
            .server(&self.server)
            .context("the server is no longer in the design")?;
        let key = lb_key(design, server).context("the server no longer runs a load balancer")?;
        if self.swap.runs(&key) {
            return Ok(false);
        }
        let lb = &key.settings;
        let previous = pool::current();
        eprintln!(
            "load balancer: {:?} mode, {:?} over {}, on {}; stats on http://{}/{}",
            lb.mode,
            lb.algorithm,
            key.backends
                .iter()
                .map(|b| format!("{} ({})", b.name, b.addr))
                .collect::<Vec<_>>()
                .join(", "),
            self.traffic.local_addr(),
            self.stats.local_addr(),
            if previous.is_some() {
                " (reloaded: the previous instance finishes its requests)"
            } else {
                ""
            }
        );
        let config = webstack_load_balancer::LbConfig {
            server_name: self.server.clone(),
            local_address: server.address,
            mode: lb.mode,
            algorithm: lb.algorithm,
            backends: key.backends.clone(),
            maxconn: lb.maxconn,
            retries: lb.retries,
            when_all_down: lb.when_all_down,
            proxy_protocol: lb.proxy_protocol,
            health_check: lb.health_check.clone(),
            timeouts: lb.timeouts.clone(),
            backend_roots: tls::backend_roots(&self.opts, design, lb)?,
            metrics: monitoring::http(),
            on_pool: Some(pool::publish),
            previous,
        };
        let traffic = self.traffic.try_clone()?;
        let stats = self.stats.try_clone()?;
        let tls = match &self.tls {
            None => None,
            Some(TlsSockets::Terminate(h)) => {
                Some(webstack_load_balancer::TlsFront::Terminate(h.try_clone()?))
            }
            Some(TlsSockets::PassThrough(l)) => Some(
                webstack_load_balancer::TlsFront::PassThrough(l.try_clone()?),
            ),
        };
        self.swap.start(key, |token| async move {
            webstack_load_balancer::run(config, traffic, tls, stats, token).await;
            Ok(())
        });
        Ok(true)
    }
}
