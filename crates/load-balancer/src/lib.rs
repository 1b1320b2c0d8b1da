//! The load balancer component (HAProxy's role): layer-7 HTTP or layer-4 TCP, backend
//! selection (`selection`), active health checks with rise/fall (`health`, `checker`),
//! passive ejection, retries on another backend, admin states, a stats page and
//! Prometheus metrics (`stats`), PROXY protocol v2 (`proxy_protocol`).
//!
//! Architecture invariant: it knows backend addresses and the setting types of the
//! topology crate, never a `Design`; the node builds its `LbConfig`.

mod checker;
mod health;
mod http;
mod pool;

mod selection;
mod stats;
mod tcp;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use webstack_net::http::{serve, serve_site, HttpLimits, Https};
use webstack_net::Listener;
use webstack_topology::{Algorithm, HealthCheck, LbMode, LbTimeouts, WhenAllDown};

pub use checker::detection_bound;
pub use health::{HealthState, Transition};
pub use pool::{AdminState, BackendConfig, BackendPool, BackendSnapshot};
pub use selection::{Candidate, Selector};
pub use webstack_net::proxy_protocol::header_v2;

#[derive(Debug, Clone)]
pub struct LbConfig {
    pub server_name: String,
    /// The load balancer's own address: connections to backends leave from it.
    pub local_address: IpAddr,
    pub mode: LbMode,
    pub algorithm: Algorithm,
    pub backends: Vec<BackendConfig>,
    pub maxconn: Option<u32>,
    pub retries: u32,
    pub when_all_down: WhenAllDown,
    pub proxy_protocol: bool,
    pub health_check: HealthCheck,
    pub timeouts: LbTimeouts,
    /// DER certificates trusted for re-encrypted traffic to backends' TLS ports.
    pub backend_roots: Vec<Vec<u8>>,
    /// Requests counted for the server's monitoring agent, when it has one.
    pub metrics: Option<webstack_monitoring::HttpMetrics>,
    /// Handed the backend pool once it exists (the agent reads backend states from it).
    pub on_pool: Option<fn(Arc<BackendPool>)>,
    /// The pool of the instance this one replaces (a reload): its backends' health and
    /// admin states carry over.
    pub previous: Option<Arc<BackendPool>>,
}

/// Where a load balancer's TLS port goes: ended here (http mode), or passed through to
/// the backends' TLS ports (tcp mode).
pub enum TlsFront {
    Terminate(Https),
    PassThrough(Listener),
}

/// Runs the load balancer on `listener` (traffic), `tls` (its TLS port, if any) and
/// `stats` (stats page, metrics and admin commands) until `shutdown`.
pub async fn run(
    config: LbConfig,
    listener: Listener,
    tls: Option<TlsFront>,
    stats: Listener,
    shutdown: CancellationToken,
) {
    let (https, passthrough) = match tls {
        Some(TlsFront::Terminate(h)) => (Some(h), None),
        Some(TlsFront::PassThrough(l)) => (None, Some(l)),
        None => (None, None),
    };
    let pool = Arc::new(BackendPool::new(
        config.backends.clone(),
        config.algorithm,
        config.maxconn,
        config.when_all_down,
        config.health_check.rise,
        config.health_check.fall,
    ));
    if let Some(previous) = &config.previous {
        pool.inherit(previous);
    }
    if let Some(f) = config.on_pool {
        f(pool.clone());
    }
    let checks = tokio::spawn(checker::run(
        pool.clone(),
        config.health_check.clone(),
        config.mode,
        config.local_address,
        shutdown.clone(),
    ));
    let stats_pool = pool.clone();
    let name = config.server_name.clone();
    let stats_task = tokio::spawn(serve(
        stats,
        HttpLimits::default(),
        shutdown.clone(),
        move |req, _peer| {
            let (pool, name) = (stats_pool.clone(), name.clone());
            async move { stats::handle(pool, &name, req).await }
        },
    ));
    match config.mode {
        LbMode::Http => {
            let proxy = Arc::new(http::HttpProxy::new(
                pool,
                config.local_address,
                config.retries,
                config.timeouts.clone(),
                &config.server_name,
                &config.backend_roots,
            ));
            let limits = HttpLimits {
                header_read_timeout: config.timeouts.client,
                ..HttpLimits::default()
            };
            let metrics = config.metrics.clone();
            serve_site(
                listener,
                https,
                limits,
                shutdown.clone(),
                move |mut req, peer| {
                    let (proxy, metrics) = (proxy.clone(), metrics.clone());
                    async move {
                        let Some(m) = metrics else {
                            return proxy.handle(req, peer).await;
                        };
                        let record = m.begin(&mut req);
                        let resp = proxy.handle(req, peer).await;
                        record.finish(&m, "load_balancer", "proxied", &resp);
                        resp
                    }
                },
            )
            .await;
        }
        LbMode::Tcp => {
            let settings = tcp::TcpSettings {
                local: config.local_address,
                retries: config.retries,
                timeouts: config.timeouts.clone(),
                proxy_protocol: config.proxy_protocol,
                to_tls: false,
            };
            let passthrough = passthrough.map(|listener| {
                let settings = tcp::TcpSettings {
                    to_tls: true,
                    ..settings.clone()
                };
                tokio::spawn(tcp::serve(
                    listener,
                    pool.clone(),
                    settings,
                    shutdown.clone(),
                ))
            });
            tcp::serve(listener, pool, settings, shutdown.clone()).await;
            if let Some(task) = passthrough {
                let _ = task.await;
            }
        }
    }
    let _ = checks.await;
    let _ = stats_task.await;
}
