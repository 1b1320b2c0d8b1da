//! The monitoring agent of a server (`[servers.NAME.monitoring]`): what the node and its
//! children cost (CPU seconds, resident memory, open files, threads, per process, since
//! every server shares the host), the disk its state uses, and what its components report
//! (component states, firewall decisions per rule, certificate expiry), exposed in the
//! OpenMetrics text format on the agent's port for a Prometheus scrape.
//!
//! Architecture invariant: knows processes, files and numbers; nothing of designs. The
//! node hands it the readings it owns through [`Readings`].

mod http;
mod metrics;
mod outbox;
mod process;
mod ship;
pub mod wire;

pub use http::{HttpMetrics, InFlight};
pub use metrics::{
    encode, AgentReading, BackendReading, CertificateReading, Component, DatabaseReading,
    FloatingReading, Readings, CONTENT_TYPE,
};
pub use outbox::Outbox;
pub use process::{filesystem_free_ratio, process_usage, ProcessUsage};
pub use ship::{now, Agent};

use std::sync::Arc;

use hyper::{Response, StatusCode};
use tokio_util::sync::CancellationToken;
use webstack_net::http::{full, serve, text, HttpLimits};
use webstack_net::Listener;

/// Serves `GET /metrics` on `listener` until `shutdown`, reading fresh values from
/// `readings` at every scrape.
pub async fn run<R>(listener: Listener, readings: R, shutdown: CancellationToken)
where
    R: Fn() -> Readings + Send + Sync + 'static,
{
    let readings = Arc::new(readings);
    serve(
        listener,
        HttpLimits::default(),
        shutdown,
        move |req, _peer| {
            let readings = readings.clone();
            async move {
                if req.uri().path() != "/metrics" {
                    return text(
                        StatusCode::NOT_FOUND,
                        "404 Not Found: the agent serves /metrics",
                    );
                }
                let body = encode(&readings());
                Response::builder()
                    .header("content-type", CONTENT_TYPE)
                    .body(full(body))
                    .expect("static headers are valid")
            }
        },
    )
    .await
}
