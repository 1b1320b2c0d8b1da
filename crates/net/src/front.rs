//! Two small TCP relays a server's node runs in front of, or behind, a program that cannot
//! take part in the firewall or choose its source address (mariadbd):
//!
//! - a **front**: the program listens only on a Unix socket; the node listens on its TCP
//!   port (so the firewall decides at accept, like on every other port) and passes each
//!   admitted connection on, prefixed with a PROXY v2 header so the program still sees
//!   the client's address (MariaDB's `proxy_protocol_networks = localhost`);
//! - a **forward**: the program connects to a port of the node's, which makes the real
//!   connection from the server's own address (mariadbd's replication connection, which
//!   MariaDB cannot bind to an address).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::proxy_protocol::header_v2;
use crate::{connect_from, Listener};

/// Relays every connection `listener` admits to the Unix socket `socket`, with a PROXY v2
/// header naming the client, until `shutdown`.
pub fn spawn_unix_front(listener: Listener, socket: PathBuf, shutdown: CancellationToken) {
    let local = listener.local_addr();
    tokio::spawn(async move {
        loop {
            let (mut client, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
            };
            let (socket, shutdown) = (socket.clone(), shutdown.clone());
            tokio::spawn(async move {
                // The program is down (restarting): the client sees a closed connection,
                // as it would from a server that is not listening.
                let Ok(mut upstream) = UnixStream::connect(&socket).await else {
                    return;
                };
                if upstream.write_all(&header_v2(peer, local)).await.is_err() {
                    return;
                }
                splice(&mut client, &mut upstream, &shutdown).await;
            });
        }
    });
}

/// Relays every connection `listener` admits to `remote`, connecting from `local`, until
/// `shutdown`.
pub fn spawn_tcp_forward(
    listener: Listener,
    local: IpAddr,
    remote: SocketAddr,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let (client, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
            };
            tokio::spawn(forward_from(client, local, remote, shutdown.clone()));
        }
    });
}

/// Connects to `remote` from `local` and splices `client` to it until either side ends or
/// `shutdown`. A refused connection just closes the client's, which its program reports
/// like any failed connect.
pub(crate) async fn forward_from<C: AsyncRead + AsyncWrite + Unpin>(
    mut client: C,
    local: IpAddr,
    remote: SocketAddr,
    shutdown: CancellationToken,
) {
    if let Ok(mut upstream) = connect_from(local, remote).await {
        splice(&mut client, &mut upstream, &shutdown).await;
    }
}

async fn splice<A, B>(a: &mut A, b: &mut B, shutdown: &CancellationToken)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::io::copy_bidirectional(a, b) => {}
    }
}
