//! Health probes: each component is asked in its own protocol whether it serves.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    pub detail: String,
}

impl Health {
    fn ok(detail: impl Into<String>) -> Health {
        Health {
            healthy: true,
            detail: detail.into(),
        }
    }
    fn bad(detail: impl Into<String>) -> Health {
        Health {
            healthy: false,
            detail: detail.into(),
        }
    }
}

/// An A query for `name`; healthy if the server answers NOERROR with an address.
pub async fn probe_dns(addr: SocketAddr, name: &str) -> Health {
    match webstack_dns::query(
        addr,
        &format!("{name}."),
        webstack_dns::RecordType::A,
        webstack_dns::Transport::Udp,
        PROBE_TIMEOUT,
    )
    .await
    {
        Ok(a) if a.code == webstack_dns::ResponseCode::NoError && !a.addresses.is_empty() => {
            Health::ok(format!(
                "{name} → {}",
                a.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        Ok(a) => Health::bad(format!("{name}: {}", a.code)),
        Err(e) => Health::bad(e.to_string()),
    }
}

/// A GET; healthy if the status is below `fail_from`.
pub async fn probe_http(addr: SocketAddr, host: &str, path: &str, fail_from: u16) -> Health {
    match http_status(addr, host, path).await {
        Ok(status) if status < fail_from => Health::ok(format!("GET {path} → {status}")),
        Ok(status) => Health::bad(format!("GET {path} → {status}")),
        Err(e) => Health::bad(format!("GET {path}: {e}")),
    }
}

/// Asks a load balancer's stats listener for its backends; healthy if it answers and at
/// least one backend is up.
pub async fn probe_lb(stats: SocketAddr) -> Health {
    match crate::lb::backends(stats).await {
        Ok(backends) => {
            let up = backends
                .iter()
                .filter(|b| b["up"] == true && b["admin"] == "ready")
                .count();
            let detail = format!(
                "{up} of {} backends up (stats: http://{stats}/)",
                backends.len()
            );
            if up > 0 {
                Health::ok(detail)
            } else {
                Health::bad(detail)
            }
        }
        Err(e) => Health::bad(format!("stats {stats}: {e}")),
    }
}

/// True if the built-in app at `addr` reports `database` as its primary in `/health`.
pub async fn app_reports_database(addr: SocketAddr, database: &str) -> bool {
    fetch(addr, "/health")
        .await
        .is_ok_and(|text| text.contains(&format!("\"database\":\"{database}\"")))
}

/// An app server's answer to a GET of `path`: the status and the release it names
/// (`X-App-Version`), if it names one.
pub async fn app_release(addr: SocketAddr, path: &str) -> Result<(u16, Option<String>), String> {
    let text = fetch(addr, path).await?;
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let version = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-app-version")
            .then(|| value.trim().to_string())
    });
    Ok((status, version))
}

/// A whole answer to a GET (Connection: close), as text.
async fn fetch(addr: SocketAddr, path: &str) -> Result<String, String> {
    let io = async {
        let mut s = crate::operator::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: webstack\r\nUser-Agent: webstack-probe\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(PROBE_TIMEOUT, io)
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

async fn http_status(addr: SocketAddr, host: &str, path: &str) -> Result<u16, String> {
    let io = async {
        let mut s = crate::operator::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: webstack-probe\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let read = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            n += read;
        }
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, io)
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

/// Reads the MySQL server's first packet: a handshake (protocol 10) or an error packet
/// (for example "host not allowed", which still proves the server answers).
pub async fn probe_mysql(addr: SocketAddr) -> Health {
    let io = async {
        let mut s = crate::operator::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await.map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut rest = vec![0u8; len.saturating_sub(1).min(256)];
        let _ = s.read(&mut rest).await;
        match header[4] {
            10 => {
                let version: String = rest
                    .iter()
                    .take_while(|b| **b != 0)
                    .map(|b| *b as char)
                    .collect();
                Ok(format!("MySQL protocol 10, server {version}"))
            }
            0xff => Ok("answers (refuses this probe's address, as its grants say)".to_string()),
            other => Err(format!("unexpected first byte {other:#x}")),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, io).await {
        Ok(Ok(detail)) => Health::ok(detail),
        Ok(Err(e)) => Health::bad(e),
        Err(_) => Health::bad(format!("no handshake within {PROBE_TIMEOUT:?}")),
    }
}
