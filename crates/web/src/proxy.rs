//! The reverse proxy to the app servers: a keep-alive pool, forwarding headers, retries
//! of requests that never reached an app server, and errors that say who failed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response, StatusCode};
use webstack_net::http::{forwarded_headers, outgoing, remove_hop_by_hop, text, Body};
use webstack_net::upstream::{UpstreamBody, UpstreamPool, UpstreamSettings};

/// Timeouts and limits of the proxy. The defaults follow nginx's.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// nginx: proxy_connect_timeout 60s; shorter here, since upstreams are close by.
    pub connect_timeout: Duration,
    /// Until the upstream's response head arrives (nginx: proxy_read_timeout 60s).
    pub response_timeout: Duration,
    /// Request bodies are read whole before forwarding, so that a request whose upstream
    /// refused the connection can go to another (nginx: client_max_body_size 1m).
    pub max_body_bytes: usize,
    /// Idle keep-alive connections kept per upstream (nginx's `keepalive`; HAProxy keeps
    /// them without a cap). Below the number of clients in flight, every burst closes the
    /// extra connections and opens them again.
    pub idle_per_upstream: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            idle_per_upstream: 128,
        }
    }
}

pub struct Proxy {
    client: Arc<UpstreamPool>,
    upstreams: Vec<SocketAddr>,
    next: AtomicUsize,
    settings: ProxySettings,
    /// Named in error pages, so a person knows which box failed.
    server_name: String,
    /// Upstream errors and retries, for the server's agent.
    metrics: Option<webstack_monitoring::HttpMetrics>,
}

impl Proxy {
    /// `local` is the server's own address: connections to app servers leave from it.
    pub fn new(
        server_name: &str,
        local: IpAddr,
        upstreams: Vec<SocketAddr>,
        settings: ProxySettings,
        metrics: Option<webstack_monitoring::HttpMetrics>,
    ) -> Proxy {
        let client = UpstreamPool::new(
            UpstreamSettings {
                local,
                connect_timeout: settings.connect_timeout,
                idle_timeout: Duration::from_secs(60),
                max_idle_per_upstream: settings.idle_per_upstream,
            },
            None,
        );
        Proxy {
            client,
            upstreams,
            next: AtomicUsize::new(0),
            settings,
            server_name: server_name.to_string(),
            metrics,
        }
    }

    fn count(&self, upstream: SocketAddr, kind: &str) {
        if let Some(m) = &self.metrics {
            m.upstream_error("web", &upstream.to_string(), kind);
        }
    }

    /// Forwards a request. Upstreams are taken round robin; when a connection to one
    /// cannot be made, the next is tried, since the request never reached an app.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        request_id: &str,
    ) -> Response<Body> {
        if self.upstreams.is_empty() {
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        }
        let (parts, body) = req.into_parts();
        let headers = match forwarded_headers(&parts, peer, request_id, &self.server_name) {
            Ok(headers) => headers,
            Err(answered_here) => return *answered_here,
        };
        // Most requests have no body: nothing to collect then.
        let body = if body.is_end_stream() {
            Ok(Bytes::new())
        } else {
            Limited::new(body, self.settings.max_body_bytes)
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
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "413 Payload Too Large: request bodies are limited to {} bytes",
                        self.settings.max_body_bytes
                    ),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request: the request body could not be read",
                )
            }
        };
        let path = parts.uri.path_and_query();

        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::new();
        for i in 0..self.upstreams.len() {
            let upstream = self.upstreams[(start + i) % self.upstreams.len()];
            let out = outgoing(
                &parts.method,
                path,
                Full::new(body.clone()),
                headers.clone(),
            );
            match tokio::time::timeout(
                self.settings.response_timeout,
                self.client.send(upstream, false, out),
            )
            .await
            {
                Ok(Ok(resp)) => return strip_response(resp),
                Ok(Err(e)) if e.is_connect() => {
                    self.count(upstream, "connect");
                    last_error = format!("cannot connect to app server {upstream}: {}", e);
                    if let (Some(m), true) = (&self.metrics, i + 1 < self.upstreams.len()) {
                        m.upstream_retry("web");
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    self.count(upstream, "response");
                    return text(StatusCode::BAD_GATEWAY, format!(
                        "502 Bad Gateway: the web server on {} lost app server {upstream} while waiting for its answer ({}). The app server is at fault; the request may or may not have been applied.",
                        self.server_name, e));
                }
                Err(_) => {
                    self.count(upstream, "timeout");
                    return text(StatusCode::GATEWAY_TIMEOUT, format!(
                        "504 Gateway Timeout: app server {upstream} did not answer the web server on {} within {:?}.",
                        self.server_name, self.settings.response_timeout));
                }
            }
        }
        text(StatusCode::BAD_GATEWAY, format!(
            "502 Bad Gateway: the web server on {} could not reach any app server ({last_error}). The request was not applied; retrying later is safe.",
            self.server_name))
    }
}

fn strip_response(resp: Response<UpstreamBody>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as webstack_net::http::BoxError)
            .boxed(),
    )
}
