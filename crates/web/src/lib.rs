//! The web server component: static files from the codebase's public folder, everything
//! else reverse-proxied to the app servers, as nginx with `try_files $uri @app` does.
//!
//! Architecture invariant: the web server knows addresses, not the design. The node turns
//! the design into a `WebConfig`; this crate never reads a design file.

mod access_log;
mod mime;
mod path;
mod proxy;
mod static_files;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, REFERER, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;
use webstack_net::http::{request_id, serve_site, text, Body, HttpLimits, Https};
use webstack_net::sendfile::Sendfile;
use webstack_net::Listener;

pub use access_log::clf_time;
pub use path::{safe_segments, PathRejection};
pub use proxy::ProxySettings;
pub use static_files::{Lookup, StaticFiles};

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The server this web server runs on, named in error pages.
    pub server_name: String,
    /// The server's own address: proxied connections leave from it.
    pub local_address: IpAddr,
    /// The folder of static files.
    pub root: PathBuf,
    /// App servers, tried round robin.
    pub upstreams: Vec<SocketAddr>,
    pub access_log: Option<PathBuf>,
    /// How the access log is rotated by size.
    pub log_rotation: webstack_logs::RotationPolicy,
    /// Requests counted for the server's monitoring agent, when it has one.
    pub metrics: Option<webstack_monitoring::HttpMetrics>,
    pub limits: HttpLimits,
    pub proxy: ProxySettings,
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the web root {root} cannot be used: {source}")]
    Root {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("the access log {path} cannot be opened: {source}")]
    AccessLog {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Answered by the web server itself, never proxied: its own health, for probes and load
/// balancers (like a `location = /health { return 200; }` in nginx). Dotted folders are
/// never served from the root, so no file can shadow it.
pub const HEALTH_PATH: &str = "/.webstack/health";

struct WebServer {
    server_name: String,
    files: StaticFiles,
    proxy: proxy::Proxy,
    log: access_log::AccessLog,
    metrics: Option<webstack_monitoring::HttpMetrics>,
}

/// Runs the web server on `listener` (and `https`, where TLS ends on it) until
/// `shutdown` is cancelled.
pub async fn run(
    config: WebConfig,
    listener: Listener,
    https: Option<Https>,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let files = StaticFiles::new(&config.root).map_err(|source| WebError::Root {
        root: config.root.clone(),
        source,
    })?;
    let log = access_log::AccessLog::open(config.access_log.as_deref(), config.log_rotation)
        .map_err(|source| WebError::AccessLog {
            path: config.access_log.clone().unwrap_or_default(),
            source,
        })?;
    let proxy = proxy::Proxy::new(
        &config.server_name,
        config.local_address,
        config.upstreams.clone(),
        config.proxy.clone(),
        config.metrics.clone(),
    );
    let server = Arc::new(WebServer {
        metrics: config.metrics.clone(),
        server_name: config.server_name.clone(),
        files,
        proxy,
        log,
    });
    let flusher = {
        let (server, shutdown) = (server.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(access_log::FLUSH_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => server.log.flush(),
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    };
    let handler = server.clone();
    serve_site(
        listener,
        https,
        config.limits.clone(),
        shutdown,
        move |req, peer| {
            let server = handler.clone();
            async move { server.handle(req, peer).await }
        },
    )
    .await;
    let _ = flusher.await;
    // Requests that finished while stopping are written now, not at the last drop.
    server.log.flush();
    Ok(())
}

impl WebServer {
    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        // With an agent, this hop is a span of the request's trace (W3C traceparent).
        let record = self.metrics.as_ref().map(|m| m.begin(&mut req));
        let request_id = match &record {
            Some(r) => r.request_id().to_string(),
            None => request_id(req.headers().get("x-request-id")),
        };
        let method = req.method().clone();
        // Kept for the access log as shared references to the request's bytes: the
        // request itself goes on to the handler.
        let target = req.uri().path_and_query().cloned();
        let version = match req.version() {
            hyper::Version::HTTP_09 => "HTTP/0.9",
            hyper::Version::HTTP_10 => "HTTP/1.0",
            hyper::Version::HTTP_2 => "HTTP/2.0",
            hyper::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let referer = req.headers().get(REFERER).cloned();
        let user_agent = req.headers().get(USER_AGENT).cloned();

        // The route template, for metrics: never the raw path.
        let (route, mut resp) = if req.uri().path() == HEALTH_PATH {
            (
                "health",
                text(
                    StatusCode::OK,
                    format!("ok: web server on {}", self.server_name),
                ),
            )
        } else {
            match self.files.lookup(req.uri().path()) {
                Lookup::Rejected(PathRejection::Unsafe(why)) => (
                    "rejected",
                    text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}")),
                ),
                Lookup::File(file) => (
                    "static",
                    self.files
                        .respond(
                            &file,
                            req.method(),
                            req.headers(),
                            req.extensions().get::<Sendfile>(),
                        )
                        .await,
                ),
                Lookup::NotFound => ("app", self.proxy.forward(req, peer, &request_id).await),
            }
        };
        resp.headers_mut().insert(
            "x-request-id",
            HeaderValue::from_str(&request_id).expect("request ids are checked"),
        );
        self.log.write(&access_log::Entry {
            peer,
            method: method.as_str(),
            target: target.as_ref().map_or("/", |t| t.as_str()),
            version,
            status: resp.status().as_u16(),
            bytes: resp.body().size_hint().exact().unwrap_or(0),
            referer: header_text(referer.as_ref()),
            user_agent: header_text(user_agent.as_ref()),
            request_id: &request_id,
            took: started.elapsed(),
        });
        if let (Some(metrics), Some(record)) = (&self.metrics, &record) {
            record.finish(metrics, "web", route, &resp);
        }
        resp
    }
}

fn header_text(v: Option<&HeaderValue>) -> &str {
    v.and_then(|v| v.to_str().ok()).unwrap_or("")
}
