//! The app server component: runs the codebase.
//!
//! Either the built-in foobar application, served in-process (`run_builtin`), or an
//! application command of the user's, kept running by `command::supervise`. The app
//! reaches its data through `storage`: MySQL (a database server of the design) or SQLite.
//!
//! Architecture invariant: like the web server, this crate knows addresses and paths, not
//! the design; the node builds its configuration.

pub mod command;
pub mod foobar;
pub mod storage;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use webstack_net::http::{serve, HttpLimits};
use webstack_net::Listener;

pub use storage::{Message, Storage, StorageConfig, StorageError};

#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// The server the app runs on, named in every response.
    pub server_name: String,
    /// The release label, named in every response (`X-App-Version`).
    pub version: String,
    pub storage: StorageConfig,
    pub limits: HttpLimits,
    /// Requests counted for the server's monitoring agent, when it has one.
    pub metrics: Option<webstack_monitoring::HttpMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the application's storage: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot start the relay to the database at {path}: {source}")]
    Relay {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Starts the relays the storage connects through (see `webstack_net::relay`), for the
/// component's whole life: an app restarted by a deploy reuses them.
pub fn spawn_relays(storage: &StorageConfig, shutdown: &CancellationToken) -> Result<(), AppError> {
    if let StorageConfig::MySql {
        local, endpoints, ..
    } = storage
    {
        for e in endpoints {
            webstack_net::relay::spawn_tcp_relay(
                &e.relay_socket,
                *local,
                e.address,
                shutdown.clone(),
            )
            .map_err(|source| AppError::Relay {
                path: e.relay_socket.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Serves the built-in foobar application on `listener` until `shutdown`. The relays to
/// its database must run already ([`spawn_relays`]).
pub async fn run_builtin(
    config: BuiltinConfig,
    listener: Listener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let storage = Arc::new(Storage::open(&config.storage)?);
    let maintenance = {
        let (storage, shutdown) = (storage.clone(), shutdown.clone());
        tokio::spawn(async move { storage.maintain(shutdown).await })
    };
    let app = Arc::new(foobar::Foobar {
        server_name: config.server_name.clone(),
        version: config.version.clone(),
        storage: storage.clone(),
    });
    let metrics = config.metrics.clone();
    serve(
        listener,
        config.limits.clone(),
        shutdown,
        move |mut req, _peer| {
            let (app, metrics) = (app.clone(), metrics.clone());
            async move {
                let Some(m) = metrics else {
                    return app.handle(req).await;
                };
                let route = foobar::route_template(req.uri().path());
                let record = m.begin(&mut req);
                let resp = app.handle(req).await;
                record.finish(&m, "app", route, &resp);
                resp
            }
        },
    )
    .await;
    let _ = maintenance.await;
    if let Ok(storage) = Arc::try_unwrap(storage) {
        storage.close().await;
    }
    Ok(())
}
