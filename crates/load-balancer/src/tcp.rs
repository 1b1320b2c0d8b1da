//! Layer-4 proxying: a client's TCP connection is spliced to a backend's, with an optional
//! PROXY protocol v2 header first so the backend learns the client's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use webstack_net::Listener;
use webstack_topology::LbTimeouts;

use crate::pool::BackendPool;
use webstack_net::proxy_protocol::header_v2;

/// How a layer-4 front reaches its backends.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// The balancer's own address: connections to backends leave from it.
    pub local: IpAddr,
    pub retries: u32,
    pub timeouts: LbTimeouts,
    pub proxy_protocol: bool,
    /// To the backends' TLS ports (TLS passed through) instead of their plain ones.
    pub to_tls: bool,
}

pub async fn serve(
    listener: Listener,
    pool: Arc<BackendPool>,
    settings: TcpSettings,
    shutdown: CancellationToken,
) {
    let frontend = listener.local_addr();
    loop {
        let (client, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let (pool, settings, shutdown) = (pool.clone(), settings.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = relay(client, peer, frontend, pool, settings) => {}
            }
        });
    }
}

async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    frontend: SocketAddr,
    pool: Arc<BackendPool>,
    settings: TcpSettings,
) {
    let TcpSettings {
        local,
        retries,
        timeouts,
        proxy_protocol,
        to_tls,
    } = settings;
    let mut tried = Vec::new();
    for attempt in 0..=retries {
        let Ok(lease) = pool.acquire(peer.ip(), &tried, timeouts.queue).await else {
            return;
        };
        let backend = lease.backend();
        let target = match backend.config.tls_addr {
            Some(tls) if to_tls => tls,
            _ => backend.config.addr,
        };
        let connect =
            tokio::time::timeout(timeouts.connect, webstack_net::connect_from(local, target)).await;
        match connect {
            Ok(Ok(mut upstream)) => {
                if proxy_protocol
                    && upstream
                        .write_all(&header_v2(peer, frontend))
                        .await
                        .is_err()
                {
                    backend
                        .stats
                        .response_errors
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            _ => {
                backend.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                let reason = format!("cannot connect to {} ({})", backend.config.name, target);
                pool.eject(lease.index, &reason);
                tried.push(lease.index);
                if attempt < retries {
                    backend.stats.retries.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "load balancer: retry {} of a TCP connection from {peer}: {reason}",
                        attempt + 1
                    );
                }
            }
        }
    }
}
