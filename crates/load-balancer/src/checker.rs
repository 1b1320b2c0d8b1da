//! Active health checks: every backend is asked on a fixed interval, from the load
//! balancer's own address, and each result feeds the rise/fall state in the pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use webstack_topology::{HealthCheck, LbMode};

use crate::pool::BackendPool;

/// Runs the checks of every backend until `shutdown`.
pub async fn run(
    pool: Arc<BackendPool>,
    check: HealthCheck,
    mode: LbMode,
    local: IpAddr,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..pool.backends.len() {
        let (pool, check, shutdown) = (pool.clone(), check.clone(), shutdown.clone());
        tasks.spawn(async move {
            let addr = pool.backends[index].config.addr;
            let mut tick = tokio::time::interval(check.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if pool.is_maint(index) {
                    continue;
                }
                let (passed, detail) = match tokio::time::timeout(
                    check.timeout,
                    check_once(&check, mode, local, addr),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => (false, format!("no answer within {:?}", check.timeout)),
                };
                pool.observe_check(index, passed, detail);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn check_once(
    check: &HealthCheck,
    mode: LbMode,
    local: IpAddr,
    addr: SocketAddr,
) -> (bool, String) {
    let mut stream = match webstack_net::connect_from(local, addr).await {
        Ok(s) => s,
        Err(e) => {
            return (
                false,
                format!(
                    "connect: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string())
                ),
            )
        }
    };
    if mode == LbMode::Tcp {
        return (true, "connection accepted".into());
    }
    let request = format!("GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: webstack-health-check\r\nConnection: close\r\n\r\n", check.path);
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return (false, format!("send: {e}"));
    }
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return (false, format!("read: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    match line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()) {
        Some(status) if status == check.expect_status => {
            (true, format!("GET {} → {status}", check.path))
        }
        Some(status) => (
            false,
            format!(
                "GET {} → {status}, expected {}",
                check.path, check.expect_status
            ),
        ),
        None => (false, "not an HTTP answer".into()),
    }
}

/// How long until a dead backend is marked down, at most: `fall` checks, each up to an
/// interval apart, plus one check's timeout.
pub fn detection_bound(check: &HealthCheck) -> Duration {
    check.interval * check.fall + check.timeout
}
