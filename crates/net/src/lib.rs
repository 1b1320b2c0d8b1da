//! Sockets bound to one server's own address.
//!
//! Every server of a design has an address of its own, so every component listens on that
//! address and every outgoing connection leaves from it: that is what lets a firewall tell
//! servers apart by source address. This crate is the one place that binds sockets, so
//! the peer check that a firewall needs has one place to live.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

mod front;
pub mod http;
pub mod process;
pub mod proxy_protocol;
pub use front::{spawn_tcp_forward, spawn_unix_front};
pub mod relay;
pub mod request_rules;
pub mod sendfile;
mod serve;
pub mod trace;
pub mod upstream;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}{}", bind_hint(source))]
    Bind { addr: SocketAddr, source: io::Error },

    #[error("cannot connect from {local} to {remote}")]
    Connect {
        local: IpAddr,
        remote: SocketAddr,
        source: io::Error,
    },
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => " (another process listens there: is another stack of this design running? `webstack status` tells)",
        io::ErrorKind::AddrNotAvailable => " (the address is not on this machine: loopback addresses are 127.0.0.0/8)",
        io::ErrorKind::PermissionDenied => " (ports below 1024 need root: choose a port from 1024 up in the design)",
        _ => "",
    }
}

/// Decides whether a peer may talk to a listener. Today every listener admits everyone;
/// the firewall component will install its policy here.
pub type PeerCheck = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Connections another listener accepted for this one.
type SideDoor = tokio::sync::mpsc::Receiver<(TcpStream, SocketAddr)>;

/// A TCP listener on a server's address that admits only the peers its check allows.
pub struct Listener {
    inner: TcpListener,
    peer_check: Option<PeerCheck>,
    /// Connections another listener accepted for this one (a floating address held by
    /// this server), already checked there.
    /// Shared by the listener's duplicates ([`Listener::try_clone`]): the one accepting
    /// takes them.
    side_door: Option<Arc<tokio::sync::Mutex<SideDoor>>>,
}

impl Listener {
    /// Binds `addr` with SO_REUSEADDR, so a restarted server gets its port back at once.
    pub fn bind(addr: SocketAddr) -> Result<Listener, NetError> {
        let bind = || -> io::Result<TcpListener> {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        };
        let inner = bind().map_err(|source| NetError::Bind { addr, source })?;
        Ok(Listener {
            inner,
            peer_check: None,
            side_door: None,
        })
    }

    /// Also yields the connections sent into `rx`.
    pub fn with_side_door(
        mut self,
        rx: tokio::sync::mpsc::Receiver<(TcpStream, SocketAddr)>,
    ) -> Listener {
        self.side_door = Some(Arc::new(tokio::sync::Mutex::new(rx)));
        self
    }

    /// Another handle on the same listening socket (a duplicated descriptor) with the
    /// same peer check and side door. What one handle has not accepted the other can: a
    /// server handed over to a new instance this way never refuses a connection (nginx's
    /// binary upgrade and HAProxy's seamless reload pass the socket the same way). Needs
    /// a running tokio runtime.
    pub fn try_clone(&self) -> io::Result<Listener> {
        use std::os::fd::AsFd;
        let fd = self.inner.as_fd().try_clone_to_owned()?;
        let std_listener = std::net::TcpListener::from(fd);
        std_listener.set_nonblocking(true)?;
        Ok(Listener {
            inner: TcpListener::from_std(std_listener)?,
            peer_check: self.peer_check.clone(),
            side_door: self.side_door.clone(),
        })
    }

    pub fn with_peer_check(mut self, check: PeerCheck) -> Listener {
        self.peer_check = Some(check);
        self
    }

    /// The plain tokio listener, for servers that take one (hickory's DNS server does its
    /// own access control, which is where a peer check for DNS belongs).
    pub fn into_tokio(self) -> TcpListener {
        self.inner
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Waits for the next admitted connection. Refused peers are closed at once.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = match &self.side_door {
                None => self.inner.accept().await?,
                Some(door) => {
                    let mut door = door.lock().await;
                    tokio::select! {
                        got = self.inner.accept() => got?,
                        Some(conn) = door.recv() => return Ok(conn),
                    }
                }
            };
            match &self.peer_check {
                Some(check) if !check(peer.ip()) => drop(stream),
                _ => return Ok((stream, peer)),
            }
        }
    }
}

/// Binds a UDP socket on a server's address.
pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, NetError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| NetError::Bind { addr, source })
}

/// Lets the kernel choose the source port at connect, not at bind (Linux's
/// IP_BIND_ADDRESS_NO_PORT, as HAProxy sets it for its `source` address). A bind to
/// `local:0` must otherwise pick a port free of every socket on that address, TIME_WAIT
/// ones included: a proxy that opens many upstream connections then searches longer and
/// longer (it fell to 600 requests/s with 7000 sockets in TIME_WAIT) and finally fails,
/// where connect only needs the 4-tuple to be unique.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function borrows, with a pointer to a live int
    // and its size; a failure (an old kernel) leaves the socket as it was.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Connects to `remote` from the server's own address `local`.
pub async fn connect_from(local: IpAddr, remote: SocketAddr) -> Result<TcpStream, NetError> {
    let connect = async {
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(remote).await
    };
    connect.await.map_err(|source| NetError::Connect {
        local,
        remote,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_leaves_from_the_servers_own_address() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let accept = tokio::spawn(async move { listener.accept().await.unwrap().1 });
        let local: IpAddr = "127.0.0.7".parse().unwrap();
        let _stream = connect_from(local, addr).await.unwrap();
        assert_eq!(accept.await.unwrap().ip(), local);
    }

    #[tokio::test]
    async fn peer_check_closes_refused_peers_and_admits_the_rest() {
        let allowed: IpAddr = "127.0.0.8".parse().unwrap();
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .with_peer_check(Arc::new(move |ip| ip == allowed));
        let addr = listener.local_addr();
        let accept = tokio::spawn(async move { listener.accept().await.unwrap().1 });
        let _refused = connect_from("127.0.0.9".parse().unwrap(), addr)
            .await
            .unwrap();
        let _admitted = connect_from(allowed, addr).await.unwrap();
        assert_eq!(accept.await.unwrap().ip(), allowed);
    }

    #[test]
    fn bind_error_says_what_to_do() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let err = Listener::bind(taken.local_addr().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another process listens there"), "{err}");
    }
}
