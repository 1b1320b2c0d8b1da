//! The HTTP/1.1 serving loop every HTTP component shares: limits, timeouts and graceful
//! shutdown in one place, so the web server and the app server cannot differ on them.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::sync::CancellationToken;

use crate::Listener;

/// The error type of every response body webstack sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response webstack sends: a buffer, a file range or a proxied stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A plain-text response, for errors a person reads.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut body = message.into();
    body.push('\n');
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static headers are valid")
}

/// Limits and timeouts of an HTTP listener. The defaults follow nginx's.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Request line plus headers, in bytes (nginx: large_client_header_buffers 4 8k).
    /// Past it the client gets 414 or 431.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// How long a client may take to send its request head (nginx: client_header_timeout 60s).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled, then stops accepting,
/// lets in-flight requests finish within `limits.shutdown_grace`, and returns.
pub async fn serve<H, F>(
    listener: Listener,
    limits: HttpLimits,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: back off briefly, keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let fut = handler(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// The request headers a proxy (web server or load balancer) forwards: hop-by-hop ones removed, X-Forwarded-* and
/// X-Request-Id set.
pub fn forwarded_headers(incoming: &HeaderMap, peer: SocketAddr, request_id: &str) -> HeaderMap {
    let mut headers = incoming.clone();
    remove_hop_by_hop(&mut headers);
    let xff = HeaderName::from_static("x-forwarded-for");
    let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert(
        xff,
        HeaderValue::from_str(&chain).expect("addresses are valid header text"),
    );
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    if let Some(host) = incoming.get(header::HOST).cloned() {
        headers
            .entry(HeaderName::from_static("x-forwarded-host"))
            .or_insert(host);
    }
    headers.insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(request_id).expect("request ids are checked"),
    );
    headers
}

pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Keeps a client's or load balancer's request id when it is sane (1 to 128 visible ASCII
/// characters), otherwise makes a new one, so one id follows a request through every tier.
pub fn request_id(incoming: Option<&HeaderValue>) -> String {
    if let Some(id) = incoming.and_then(|v| v.to_str().ok()) {
        if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
            return id.to_string();
        }
    }
    // RandomState is seeded from the OS once per thread and then varies per instance:
    // unpredictable enough for tracing ids, which are not secrets.
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    format!("{:016x}{:016x}", a, h.finish())
}

/// The innermost cause of an error, which is what a person needs in a 502 message
/// (`connection refused`, not `client error (Connect)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
