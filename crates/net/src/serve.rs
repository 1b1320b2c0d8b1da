//! The serving loop every HTTP front shares (web server, app server, load balancer):
//! plain HTTP/1.1, or TLS with HTTP/2 or HTTP/1.1 by ALPN; the request rules before any
//! handler; limits, timeouts and graceful shutdown in one place, so no two components
//! can differ on them. A plain port in front of a TLS one redirects to it (308) and TLS
//! responses carry HSTS when the front asks for it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::http::{refusal, text, Body, HttpLimits};
use crate::request_rules::{self, Verdict};
use crate::sendfile::{Sendfile, SendfileStream};
use crate::Listener;

/// How a front serves its listener.
#[derive(Clone, Default)]
pub struct Front {
    pub limits: HttpLimits,
    /// TLS on this listener (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `Strict-Transport-Security: max-age=N` on every TLS response.
    pub hsts_max_age: Option<u64>,
    /// On a plain listener: answer 308 to `https://host:PORT/…` instead of serving,
    /// except ACME HTTP-01 challenges and webstack's own health path.
    pub redirect_to_https: Option<u16>,
    /// ACME HTTP-01 key authorizations this front answers itself on
    /// `/.well-known/acme-challenge/TOKEN`.
    pub acme: Option<Arc<AcmeChallenges>>,
}

/// The HTTP-01 challenges an ACME order has published, by token.
#[derive(Debug, Default)]
pub struct AcmeChallenges {
    tokens: std::sync::RwLock<std::collections::HashMap<String, String>>,
}

impl AcmeChallenges {
    /// Publishes (`Some`) or withdraws (`None`) the key authorization of `token`.
    pub fn set(&self, token: &str, key_authorization: Option<&str>) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        match key_authorization {
            Some(k) => tokens.insert(token.to_string(), k.to_string()),
            None => tokens.remove(token),
        };
    }

    fn get(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// What a handler may want to know about the connection a request came on; every request
/// carries it as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub tls: bool,
}

/// Serves plain HTTP/1.1 on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish within `limits.shutdown_grace`, and returns.
pub async fn serve<H, F>(
    listener: Listener,
    limits: HttpLimits,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let front = Front {
        limits,
        ..Front::default()
    };
    serve_front(listener, front, shutdown, handler).await
}

/// Serves `listener` as `front` says until `shutdown` is cancelled (see [`serve`]).
pub async fn serve_front<H, F>(
    listener: Listener,
    front: Front,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let limits = front.limits.clone();
    let graceful = Arc::new(GracefulShutdown::new());
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(250);
    let acceptor = front.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let hsts = front
        .hsts_max_age
        .map(|age| HeaderValue::from_str(&format!("max-age={age}")).expect("digits"));
    let info = ConnectionInfo {
        tls: acceptor.is_some(),
    };
    // Once stopping, every HTTP/1 response says `Connection: close`, so keep-alive
    // clients end their connections at a request boundary instead of finding them closed
    // under a request they just sent (HAProxy's idle-close-on-response).
    let draining = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(Notify::new());
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
        // A plain connection can send file bodies by sendfile(2); TLS encrypts them in
        // the process anyway.
        let sendfile = acceptor.is_none().then(Sendfile::default);
        let service = {
            let sendfile = sendfile.clone();
            let handler = handler.clone();
            let hsts = hsts.clone();
            let redirect = front.redirect_to_https;
            let acme = front.acme.clone();
            let max_target = limits.max_target_bytes;
            let draining = draining.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(info);
                if let Some(sendfile) = &sendfile {
                    req.extensions_mut().insert(sendfile.clone());
                }
                let http1 = req.version() < hyper::Version::HTTP_2;
                let draining = draining.clone();
                let outcome = match admit(&mut req, max_target, redirect, acme.as_deref()) {
                    None => Ok(handler(req, peer)),
                    Some(answer) => Err(answer),
                };
                let hsts = hsts.clone();
                async move {
                    let mut response = match outcome {
                        Ok(fut) => fut.await,
                        Err(response) => response,
                    };
                    if let Some(hsts) = hsts {
                        response
                            .headers_mut()
                            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
                    }
                    if http1 && draining.load(Ordering::Relaxed) {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response)
                }
            })
        };
        open.fetch_add(1, Ordering::Relaxed);
        let done = ConnectionDone {
            open: open.clone(),
            closed: closed.clone(),
        };
        match &acceptor {
            None => {
                let io = TokioIo::new(SendfileStream::new(stream, sendfile.unwrap_or_default()));
                let conn = graceful.watch(http1.serve_connection(io, service));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(done);
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, under the header
                // timeout, so a slow or silent client holds up nobody else.
                let (acceptor, graceful) = (acceptor.clone(), graceful.clone());
                let (http1, http2) = (http1.clone(), http2.clone());
                let timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    let _done = done;
                    let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = graceful.watch(http2.serve_connection(io, service)).await;
                    } else {
                        let _ = graceful.watch(http1.serve_connection(io, service)).await;
                    }
                });
            }
        }
    }
    drop(listener);
    // Busy connections end at their next response; give idle ones a moment to send one
    // more request (and get its `Connection: close`), then close what is left.
    draining.store(true, Ordering::Relaxed);
    let idle_until = tokio::time::Instant::now() + IDLE_DRAIN.min(limits.shutdown_grace);
    while open.load(Ordering::Relaxed) > 0 {
        let notified = closed.notified();
        if open.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(idle_until) => break,
        }
    }
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    let _ = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
}

/// How long a stopping server waits for idle keep-alive connections to make one more
/// request before it closes them.
const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// Counts a connection out when its task ends, however it ends.
struct ConnectionDone {
    open: Arc<AtomicUsize>,
    closed: Arc<Notify>,
}

impl Drop for ConnectionDone {
    fn drop(&mut self) {
        if self.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.closed.notify_waiters();
        }
    }
}

/// The request rules, then the HTTPS redirect of a plain port: `Some` is the answer the
/// front gives itself instead of its handler.
fn admit(
    req: &mut Request<Incoming>,
    max_target: usize,
    redirect: Option<u16>,
    acme: Option<&AcmeChallenges>,
) -> Option<Response<Body>> {
    // The request rules hold at every front before any handler runs, so no component can
    // answer or forward a request the RFCs say to refuse.
    match request_rules::check(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        max_target,
    ) {
        Verdict::Pass { host } => {
            if let Some(host) = host {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        refused => return Some(refusal(refused)),
    }
    let path = req.uri().path();
    if let (Some(acme), Some(token)) = (acme, path.strip_prefix("/.well-known/acme-challenge/")) {
        if let Some(key_authorization) = acme.get(token) {
            let mut r = Response::new(crate::http::full(key_authorization));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            return Some(r);
        }
    }
    let port = redirect?;
    if path.starts_with("/.well-known/acme-challenge/") || path == "/.webstack/health" {
        return None;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let Some(location) = https_location(host, port, req.uri()) else {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: no host to redirect to",
        ));
    };
    let mut response = text(
        StatusCode::PERMANENT_REDIRECT,
        format!("308 Permanent Redirect: this site is served over HTTPS at {location}"),
    );
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("built from header text"),
    );
    Some(response)
}

/// `https://HOST[:PORT]/path?query` for a request that came to the plain port with `Host`
/// `host` (its port, if any, replaced by the TLS port; 443 left out).
pub fn https_location(host: &str, port: u16, uri: &hyper::Uri) -> Option<String> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if name.is_empty() {
        return None;
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    })
}

/// The HTTPS side of a site: its listener, TLS configuration and policies.
pub struct Https {
    pub listener: Listener,
    pub tls: Arc<rustls::ServerConfig>,
    pub hsts_max_age: Option<u64>,
    /// The plain listener redirects to this one (308).
    pub redirect_http: bool,
    /// ACME challenges the plain listener answers for this endpoint's orders.
    pub acme: Option<Arc<AcmeChallenges>>,
}

impl Https {
    /// The same endpoint on a duplicate of its listener ([`Listener::try_clone`]), for a
    /// new instance of the server that takes it over.
    pub fn try_clone(&self) -> std::io::Result<Https> {
        Ok(Https {
            listener: self.listener.try_clone()?,
            tls: self.tls.clone(),
            hsts_max_age: self.hsts_max_age,
            redirect_http: self.redirect_http,
            acme: self.acme.clone(),
        })
    }
}

/// Serves a site on its plain listener and, when it has one, its HTTPS listener, with
/// one handler, until `shutdown`.
pub async fn serve_site<H, F>(
    plain: Listener,
    https: Option<Https>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let redirect_to_https = https
        .as_ref()
        .filter(|h| h.redirect_http)
        .map(|h| h.listener.local_addr().port());
    let plain_front = Front {
        limits: limits.clone(),
        redirect_to_https,
        acme: https.as_ref().and_then(|h| h.acme.clone()),
        ..Front::default()
    };
    let first = handler.clone();
    let plain_side = serve_front(plain, plain_front, shutdown.clone(), move |r, p| {
        first(r, p)
    });
    let Some(https) = https else {
        return plain_side.await;
    };
    let tls_front = Front {
        limits,
        tls: Some(https.tls),
        hsts_max_age: https.hsts_max_age,
        redirect_to_https: None,
        acme: None,
    };
    let tls_side = serve_front(https.listener, tls_front, shutdown, move |r, p| {
        handler(r, p)
    });
    tokio::join!(plain_side, tls_side);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        let uri: hyper::Uri = "/a/b?c=1".parse().unwrap();
        assert_eq!(
            https_location("www.foobar.com:8080", 8443, &uri).as_deref(),
            Some("https://www.foobar.com:8443/a/b?c=1")
        );
        assert_eq!(
            https_location("www.foobar.com", 443, &uri).as_deref(),
            Some("https://www.foobar.com/a/b?c=1")
        );
        assert_eq!(
            https_location("[::1]:80", 8443, &"/".parse().unwrap()).as_deref(),
            Some("https://[::1]:8443/")
        );
        assert_eq!(https_location("", 8443, &uri), None);
    }
}
