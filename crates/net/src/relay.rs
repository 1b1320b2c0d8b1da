//! A private Unix-socket relay that makes a client library's TCP connections leave from
//! the server's own address.
//!
//! Database client libraries (mysql_async, sqlx) connect with the operating system's
//! choice of source address, which on loopback is 127.0.0.1 for every server. A client
//! that connects to this relay's socket instead gets a TCP connection made by
//! `connect_from`, so the database sees the app server's address: grants, and later the
//! firewall, can then name the app server.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

/// Listens on `socket_path` (replacing a stale socket file) and relays every connection
/// to `remote` from `local` until `shutdown`. Returns once the socket is listening.
pub fn spawn_tcp_relay(
    socket_path: &Path,
    local: IpAddr,
    remote: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<PathBuf> {
    let _ = std::fs::remove_file(socket_path);
    let listener = UnixListener::bind(socket_path)?;
    let path = socket_path.to_path_buf();
    let cleanup = path.clone();
    tokio::spawn(async move {
        loop {
            let client = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            tokio::spawn(crate::front::forward_from(
                client,
                local,
                remote,
                shutdown.clone(),
            ));
        }
        let _ = std::fs::remove_file(cleanup);
    });
    Ok(path)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::Listener;

    #[tokio::test]
    async fn relayed_connection_arrives_from_the_local_address() {
        let dir = tempfile::tempdir().unwrap();
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let remote = listener.local_addr();
        let shutdown = CancellationToken::new();
        let local: IpAddr = "127.0.0.42".parse().unwrap();
        let path = spawn_tcp_relay(
            &dir.path().join("relay.sock"),
            local,
            remote,
            shutdown.clone(),
        )
        .unwrap();
        let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let (mut server_side, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), local);
        let mut buf = [0u8; 4];
        server_side.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        shutdown.cancel();
    }
}
