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
