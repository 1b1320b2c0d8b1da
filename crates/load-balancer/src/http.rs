//! Layer-7 proxying: each request goes to a backend chosen by the pool; a request that
//! could not reach a backend is sent to another (redispatch), an idempotent one also
//! after a reset, a POST never twice. Every retry is counted and logged with its reason.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use webstack_net::http::{
    forwarded_headers, outgoing, remove_hop_by_hop, request_id, text, Body, BoxError,
};
use webstack_net::upstream::{UpstreamBody, UpstreamPool, UpstreamSettings};
use webstack_topology::LbTimeouts;

use crate::pool::{BackendPool, Lease, NoBackend};

/// Request bodies are read whole before forwarding so a failed attempt can be replayed.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub struct HttpProxy {
    pub pool: Arc<BackendPool>,
    client: Arc<UpstreamPool>,
    retries: u32,
    timeouts: LbTimeouts,
    server_name: String,
}

impl HttpProxy {
    pub fn new(
        pool: Arc<BackendPool>,
        local: IpAddr,
        retries: u32,
        timeouts: LbTimeouts,
        server_name: &str,
        backend_roots: &[Vec<u8>],
    ) -> HttpProxy {
        // Re-encryption to backends with a TLS port, verified against the roots that
        // issued their certificates (the stack's CA); plain HTTP to the others.
        let mut roots = rustls::RootCertStore::empty();
        for der in backend_roots {
            let _ = roots.add(rustls_pki_types::CertificateDer::from(der.clone()));
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = UpstreamPool::new(
            UpstreamSettings {
                local,
                connect_timeout: timeouts.connect,
                idle_timeout: std::time::Duration::from_secs(60),
                max_idle_per_upstream: 256,
            },
            Some(tls),
        );
        HttpProxy {
            pool,
            client,
            retries,
            timeouts,
            server_name: server_name.to_string(),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let rid = request_id(req.headers().get("x-request-id"));
        let (parts, body) = req.into_parts();
        let headers = match forwarded_headers(&parts, peer, &rid, &self.server_name) {
            Ok(headers) => headers,
            Err(answered_here) => return *answered_here,
        };
        // A body that does not frame correctly (bad chunk sizes, a short Content-Length)
        // ends here with a 400; nothing of it reaches a backend. Most requests have none.
        let body = if body.is_end_stream() {
            Ok(Bytes::new())
        } else {
            Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
        };
        let body = match body {
            Ok(b) => b,
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return text(StatusCode::PAYLOAD_TOO_LARGE, format!("413 Payload Too Large: the load balancer takes bodies up to {MAX_BODY_BYTES} bytes"));
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("400 Bad Request: the request body is malformed ({e})"),
                )
            }
        };
        let path = parts.uri.path_and_query();
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::DELETE
                | Method::OPTIONS
                | Method::TRACE
        );

        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = String::new();
        for attempt in 0..=self.retries {
            let lease = match self
                .pool
                .acquire(peer.ip(), &tried, self.timeouts.queue)
                .await
            {
                Ok(l) => l,
                Err(NoBackend::QueueTimeout) => {
                    return text(StatusCode::SERVICE_UNAVAILABLE, format!("503 Service Unavailable: every backend of {} stayed at its connection limit for {:?}. Retrying later is safe.", self.server_name, self.timeouts.queue));
                }
                Err(NoBackend::NoneAvailable) if tried.is_empty() => {
                    return text(StatusCode::SERVICE_UNAVAILABLE, format!("503 Service Unavailable: no backend of load balancer {} is up. Retrying later is safe.", self.server_name));
                }
                Err(NoBackend::NoneAvailable) => break,
            };
            let backend = lease.backend();
            let out = outgoing(
                &parts.method,
                path,
                Full::new(body.clone()),
                headers.clone(),
            );
            let (addr, tls) = match backend.config.tls_addr {
                Some(tls) => (tls, true),
                None => (backend.config.addr, false),
            };
            let started = Instant::now();
            match tokio::time::timeout(self.timeouts.server, self.client.send(addr, tls, out)).await
            {
                Ok(Ok(resp)) => {
                    backend
                        .stats
                        .record_response(resp.status().as_u16(), started.elapsed());
                    return with_lease(resp, lease, &rid);
                }
                Ok(Err(e)) if e.is_connect() => {
                    backend.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    last_error = format!(
                        "cannot connect to {} ({}): {e}",
                        backend.config.name, backend.config.addr,
                    );
                    self.pool.eject(lease.index, &last_error);
                }
                Ok(Err(e)) => {
                    backend
                        .stats
                        .response_errors
                        .fetch_add(1, Ordering::Relaxed);
                    last_error = format!(
                        "{} ({}) failed before answering: {e}",
                        backend.config.name, backend.config.addr,
                    );
                    if !idempotent {
                        // The request may have been applied: a POST is never sent twice.
                        return text(StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {last_error}. The backend is at fault; the {} may or may not have been applied, so it was not retried.", parts.method));
                    }
                }
                Err(_) => {
                    backend.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "504 Gateway Timeout: backend {} did not answer within {:?}.",
                            backend.config.name, self.timeouts.server
                        ),
                    );
                }
            }
            tried.push(lease.index);
            if attempt < self.retries {
                backend.stats.retries.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "load balancer: retry {} of {} {} (request {rid}): {last_error}",
                    attempt + 1,
                    parts.method,
                    path.map(|p| p.as_str()).unwrap_or("/")
                );
            }
        }
        if last_error.is_empty() {
            last_error.push_str("no backend was tried");
        }
        text(StatusCode::SERVICE_UNAVAILABLE, format!("503 Service Unavailable: no backend could take the request ({last_error}). It was not applied; retrying later is safe."))
    }
}

/// The backend's response, with the lease held until its body is done, so the backend
/// counts as busy (for leastconn and maxconn) for exactly as long as it is.
fn with_lease(resp: Response<UpstreamBody>, lease: Lease, rid: &str) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Ok(v) = HeaderValue::from_str(rid) {
        parts.headers.entry("x-request-id").or_insert(v);
    }
    Response::from_parts(
        parts,
        LeasedBody {
            inner: body,
            _lease: lease,
        }
        .boxed(),
    )
}

struct LeasedBody {
    inner: UpstreamBody,
    _lease: Lease,
}

impl HttpBody for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
