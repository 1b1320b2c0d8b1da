//! The operator's console: the address webstack's own probes and commands connect from
//! (`webstack_firewall::operator_address`), so the firewall lets `status`, `lb` and `db`
//! through and treats everything else from this machine as a stranger.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use tokio::net::TcpStream;

static OPERATOR: OnceLock<IpAddr> = OnceLock::new();

/// Takes the operator's address from the design every command loads first.
pub fn set_from(design: &webstack_topology::Design) {
    let _ = OPERATOR.set(webstack_firewall::operator_address(design));
}

/// Connects to `addr` from the operator's address (127.0.0.1 before a design is loaded).
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let from = OPERATOR
        .get()
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    webstack_net::connect_from(from, addr)
        .await
        .map_err(|e| match e {
            webstack_net::NetError::Connect { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })
}

/// One HTTP/1.1 exchange with a stack's listener, from the operator's address (the
/// firewalls let the operator's console in): (status, body).
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = connect(addr).await?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(std::time::Duration::from_secs(5), io)
        .await
        .with_context(|| format!("{addr} did not answer within 5 s"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP answer")?;
    Ok((status, body.to_string()))
}
