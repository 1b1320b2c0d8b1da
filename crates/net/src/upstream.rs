//! Keep-alive connections from a proxy (the web server's reverse proxy, the load
//! balancer) to its upstreams, leaving from the server's own address.
//!
//! hyper's HTTP/1.1 client connections, pooled here rather than by hyper-util's legacy
//! `Client`, which spawns a task for every request to put its connection back in the
//! pool and keys the pool by formatted URI parts. Here a connection goes back to its
//! upstream's idle list when the response body ends, from the task reading it. A pooled
//! connection the upstream closed meanwhile hands the request back unsent (hyper's
//! `try_send_request`) and it goes on a fresh connection, as hyper-util's retry of
//! canceled requests does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::connect_from;

/// How a pool connects and how many idle connections it keeps.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Connections leave from this address (the server's own).
    pub local: IpAddr,
    pub connect_timeout: Duration,
    /// An idle connection older than this is not reused (the upstream may have closed it).
    pub idle_timeout: Duration,
    /// Idle connections kept per upstream (nginx's `keepalive`).
    pub max_idle_per_upstream: usize,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made: the request never left.
    Connect(String),
    /// The connection failed after the request was sent (or while it was): it may have
    /// been applied.
    Failed(hyper::Error),
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(why) => f.write_str(why),
            UpstreamError::Failed(e) => f.write_str(&crate::http::root_cause(e)),
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The pool: idle connections by upstream address (and whether they are TLS).
pub struct UpstreamPool {
    settings: UpstreamSettings,
    tls: Option<tokio_rustls::TlsConnector>,
    idle: Mutex<HashMap<(SocketAddr, bool), Vec<Idle>>>,
    this: Weak<UpstreamPool>,
}

impl UpstreamPool {
    /// `tls` verifies upstreams reached over TLS (their certificates name their address).
    pub fn new(settings: UpstreamSettings, tls: Option<rustls::ClientConfig>) -> Arc<UpstreamPool> {
        let tls = tls.map(|mut config| {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Arc::new_cyclic(|this| UpstreamPool {
            settings,
            tls,
            idle: Mutex::new(HashMap::new()),
            this: this.clone(),
        })
    }

    /// Sends `req` (origin form, as [`crate::http::outgoing`] makes it) to `addr`, over
    /// TLS when `tls`, on an idle connection when there is one, else on a new one.
    pub async fn send(
        &self,
        addr: SocketAddr,
        tls: bool,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // A Host when the client sent none (HTTP/1.0), as hyper-util's client adds.
        if !req.headers().contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
                req.headers_mut().insert(HOST, v);
            }
        }
        let key = (addr, tls);
        while let Some(mut sender) = self.checkout(key) {
            // A connection whose last response just ended may not have turned idle yet.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.with_return(resp, sender, key)),
                Err(mut e) => match e.take_message() {
                    // Closed before it took the request: try the next connection.
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Failed(e.into_error())),
                },
            }
        }
        // Boxed: the connect and TLS handshake state is most of this future's size, and
        // every request's future is moved into its connection's dispatcher.
        let mut sender = Box::pin(self.connect(addr, tls)).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.with_return(resp, sender, key)),
            Err(e) => Err(UpstreamError::Failed(e)),
        }
    }

    /// The most recently used idle connection to `key` that is still open and fresh.
    fn checkout(&self, key: (SocketAddr, bool)) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&key)?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < self.settings.idle_timeout && !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    fn checkin(&self, key: (SocketAddr, bool), sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < self.settings.max_idle_per_upstream {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, addr: SocketAddr, tls: bool) -> Result<Sender, UpstreamError> {
        let timeout = self.settings.connect_timeout;
        let connect = async {
            let stream = connect_from(self.settings.local, addr)
                .await
                .map_err(|e| UpstreamError::Connect(crate::http::root_cause(&e)))?;
            let _ = stream.set_nodelay(true);
            if tls {
                let Some(connector) = &self.tls else {
                    return Err(UpstreamError::Connect(
                        "no TLS roots are configured for upstreams".into(),
                    ));
                };
                let stream = connector
                    .connect(ServerName::IpAddress(addr.ip().into()), stream)
                    .await
                    .map_err(|e| UpstreamError::Connect(format!("TLS handshake: {e}")))?;
                handshake(TokioIo::new(stream)).await
            } else {
                handshake(TokioIo::new(stream)).await
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Connect(format!(
                "no connection within {timeout:?}"
            ))),
        }
    }

    fn with_return(
        &self,
        resp: Response<Incoming>,
        sender: Sender,
        key: (SocketAddr, bool),
    ) -> Response<UpstreamBody> {
        let (parts, inner) = resp.into_parts();
        let mut body = UpstreamBody {
            inner,
            pooled: Some((sender, key, self.this.clone())),
        };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        Response::from_parts(parts, body)
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Sender, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(crate::http::root_cause(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// An upstream's response body; its connection goes back to the pool when it ends, and
/// is closed when the body is dropped before that.
pub struct UpstreamBody {
    inner: Incoming,
    pooled: Option<(Sender, (SocketAddr, bool), Weak<UpstreamPool>)>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        if let Some((sender, key, pool)) = self.pooled.take() {
            if let Some(pool) = pool.upgrade() {
                pool.checkin(key, sender);
            }
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.pooled = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pool() -> Arc<UpstreamPool> {
        UpstreamPool::new(
            UpstreamSettings {
                local: "127.0.0.1".parse().unwrap(),
                connect_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(60),
                max_idle_per_upstream: 8,
            },
            None,
        )
    }

    fn get(path: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = hyper::Uri::from_static(path);
        req
    }

    /// An upstream that answers every request on a connection with the connection's
    /// number; it closes each connection after `per_connection` responses.
    async fn upstream(per_connection: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for n in 0.. {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    for _ in 0..per_connection {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let Ok(k) = s.read(&mut chunk).await else {
                                return;
                            };
                            if k == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..k]);
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        buf.drain(..end + 4);
                        let body = format!("{n}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        s.write_all(resp.as_bytes()).await.unwrap();
                    }
                    // Closed without a word, as an upstream's keep-alive timeout does.
                });
            }
        });
        addr
    }

    async fn text(pool: &UpstreamPool, addr: SocketAddr) -> String {
        let resp = pool.send(addr, false, get("/")).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn one_connection_serves_request_after_request() {
        let addr = upstream(usize::MAX).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(
                text(&pool, addr).await,
                "0",
                "every request on connection 0"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_without_an_error() {
        let addr = upstream(1).await;
        let pool = pool();
        assert_eq!(text(&pool, addr).await, "0");
        // Wait until the pool's connection has seen the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let closed = {
                let idle = pool.idle.lock().unwrap();
                idle.get(&(addr, false))
                    .is_none_or(|l| l.iter().all(|c| c.sender.is_closed()))
            };
            if closed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the close never reached the pool"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(text(&pool, addr).await, "1", "a fresh connection took it");
    }

    #[tokio::test]
    async fn an_upstream_that_is_not_there_is_a_connect_error() {
        let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let err = pool().send(addr, false, get("/")).await.err().unwrap();
        assert!(err.is_connect(), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
