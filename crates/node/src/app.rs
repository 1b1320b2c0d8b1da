//! The app server component. It runs the release of the codebase that the server's
//! `release.json` names (the design's codebase, version 1, until a deploy writes one) and,
//! when `webstack deploy` changes that file, stops the running release gracefully (its
//! in-flight requests finish) and starts the new one on the same address. The relays to
//! the database live as long as the component, so a new release finds them in place.
//!
//! The built-in app's listening socket also lives as long as the component: each release
//! serves a duplicate of it, so the new release accepts while the old one finishes its
//! requests, and no connection is refused in between. An application command binds its
//! own port, so its old process must exit before the new one starts: a short gap.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Codebase, Server, Storage};

use crate::{
    firewall, monitoring, read_password, ComponentState, NodeOptions, StatusFile, APP_DATABASE,
    APP_DB_USER,
};

/// The version an app server runs before its first deploy.
pub const INITIAL_VERSION: &str = "1";

/// How often the node looks at `release.json` for a deploy.
const RELEASE_POLL: Duration = Duration::from_millis(100);

/// What an app server runs: a version label and, for a codebase of the user's, the folder
/// of that version (the design's folder when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codebase: Option<PathBuf>,
}

impl Default for Release {
    fn default() -> Release {
        Release {
            version: INITIAL_VERSION.into(),
            codebase: None,
        }
    }
}

impl Release {
    /// The release in `path`, or the initial one if there is none (or it is unreadable).
    pub fn read(path: &Path) -> Release {
        crate::json_file::read_or_default(path)
    }

    /// Writes the release atomically, so a node never reads half of one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::json_file::write_atomic(path, self)
    }
}

/// Everything a release needs that does not change between releases.
struct AppServer {
    server: String,
    addr: SocketAddr,
    /// The built-in app's listener, handed to each release in turn (closed at shutdown).
    listener: std::sync::Mutex<Option<webstack_net::Listener>>,
    codebase: Codebase,
    storage: webstack_app::StorageConfig,
    /// The command's environment besides the version (a codebase of the user's).
    env: Vec<(String, String)>,
    log: PathBuf,
    status: Arc<StatusFile>,
}

pub(crate) fn start(
    opts: &NodeOptions,
    server: &Server,
    app: &webstack_topology::App,
    dir: &Path,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(server.address, app.port);
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let storage = storage_config(opts, server, app, &run_dir)?;
    let mut env = Vec::new();
    let mut listener = None;
    match &opts.design.codebase {
        Codebase::Builtin(_) => {
            webstack_app::spawn_relays(&storage, shutdown)?;
            listener = Some(firewall::bind(addr)?);
        }
        Codebase::Path { path, command } => {
            if command.is_none() {
                bail!(
                    "server {} runs an app server, and the codebase at {} names no command to run",
                    server.name,
                    path.display()
                );
            }
            env = command_env(server, app, &storage, shutdown)?;
        }
    }
    status.add("app", vec![addr], ComponentState::Starting);
    let me = AppServer {
        server: server.name.clone(),
        addr,
        listener: std::sync::Mutex::new(listener),
        codebase: opts.design.codebase.clone(),
        storage,
        env,
        log: dir.join("app.log"),
        status: status.clone(),
    };
    let release_file = opts.layout.release_file(&server.name);
    let shutdown = shutdown.clone();
    tasks.spawn(async move { me.run(&release_file, shutdown).await });
    Ok(())
}

impl AppServer {
    /// Runs the current release until `shutdown`, replacing it whenever the release file
    /// names another.
    async fn run(self, release_file: &Path, shutdown: CancellationToken) -> Result<()> {
        let me = Arc::new(self);
        let mut release = Release::read(release_file);
        loop {
            let instance = shutdown.child_token();
            let mut running = tokio::spawn(me.clone().serve(release.clone(), instance.clone()));
            let next = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Refused from now on, rather than queued on a socket that closes
                        // when the release has finished.
                        me.listener.lock().expect("listener lock").take();
                        let _ = running.await;
                        return Ok(());
                    }
                    ended = &mut running => {
                        return match ended {
                            Ok(Ok(())) => bail!("the app server (version {}) stopped by itself", release.version),
                            Ok(Err(e)) => Err(e),
                            Err(e) => bail!("the app server panicked: {e}"),
                        };
                    }
                    _ = tokio::time::sleep(RELEASE_POLL) => {
                        let wanted = Release::read(release_file);
                        if wanted != release {
                            break wanted;
                        }
                    }
                }
            };
            eprintln!(
                "app: deploying version {} (running {}): stopping the running version, its requests in flight finish first",
                next.version, release.version
            );
            me.status.set("app", ComponentState::Restarting, None);
            instance.cancel();
            let old = release.version.clone();
            let finished = async move {
                match running.await {
                    Ok(Ok(())) => {
                        eprintln!("app: version {old} has finished its requests and stopped")
                    }
                    Ok(Err(e)) => eprintln!("app: version {old} ended with: {e:#}"),
                    Err(e) => eprintln!("app: version {old} panicked: {e}"),
                }
            };
            if matches!(me.codebase, Codebase::Builtin(_)) {
                // The new release takes the socket over now; the old one finishes what it
                // accepted on its own.
                tokio::spawn(finished);
            } else {
                finished.await;
            }
            release = next;
        }
    }

    /// Serves one release until `shutdown`.
    async fn serve(self: Arc<Self>, release: Release, shutdown: CancellationToken) -> Result<()> {
        self.status.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == "app") {
                c.version = Some(release.version.clone());
            }
        });
        match &self.codebase {
            Codebase::Builtin(name) => {
                let listener = self
                    .listener
                    .lock()
                    .expect("listener lock")
                    .as_ref()
                    .context("the app server is stopping")?
                    .try_clone()
                    .context("cannot hand the app's listening socket to the new release")?;
                self.status.set("app", ComponentState::Ready, None);
                eprintln!(
                    "app: {name} version {} listening on {}",
                    release.version, self.addr
                );
                let config = webstack_app::BuiltinConfig {
                    server_name: self.server.clone(),
                    version: release.version,
                    storage: self.storage.clone(),
                    limits: Default::default(),
                    metrics: monitoring::http(),
                };
                Ok(webstack_app::run_builtin(config, listener, shutdown).await?)
            }
            Codebase::Path { path, command } => {
                let dir = release.codebase.clone().unwrap_or_else(|| path.clone());
                let mut env = self.env.clone();
                env.push(("WEBSTACK_APP_VERSION".into(), release.version.clone()));
                let cmd = webstack_app::command::AppCommand {
                    argv: command.clone().expect("checked at start"),
                    dir,
                    env,
                    log: self.log.clone(),
                };
                eprintln!(
                    "app: running {:?} (version {}) in {} for {}",
                    cmd.argv,
                    release.version,
                    cmd.dir.display(),
                    self.addr
                );
                let status = self.status.clone();
                webstack_app::command::supervise(cmd, shutdown, |pid| {
                    status.set("app", ComponentState::Ready, Some(pid))
                })
                .await;
                Ok(())
            }
        }
    }
}

/// Where the app's data lives: the design's database cluster, or SQLite on this server.
fn storage_config(
    opts: &NodeOptions,
    server: &Server,
    app: &webstack_topology::App,
    run_dir: &Path,
) -> Result<webstack_app::StorageConfig> {
    Ok(match app.storage {
        Storage::Sqlite => webstack_app::StorageConfig::Sqlite {
            path: opts.layout.server_dir(&server.name).join("foobar.sqlite"),
        },
        Storage::MySql => {
            let db_name = app
                .database
                .as_deref()
                .expect("validated: MySQL storage names a database server");
            let (primary, replicas) = opts
                .design
                .database_cluster(db_name)
                .expect("validated: the database server exists");
            let endpoints = std::iter::once(&primary)
                .chain(replicas.iter())
                .filter_map(|name| {
                    let s = opts.design.server(name)?;
                    Some(webstack_app::storage::DbEndpoint {
                        name: name.clone(),
                        address: SocketAddr::new(s.address, s.database.as_ref()?.port),
                        relay_socket: run_dir.join(format!("db-{name}.sock")),
                    })
                })
                .collect();
            webstack_app::StorageConfig::MySql {
                endpoints,
                primary,
                cluster_file: opts.layout.cluster_file(),
                user: APP_DB_USER.into(),
                password: read_password(&opts.layout)?,
                database: APP_DATABASE.into(),
                local: server.address,
                max_replica_lag: app.max_replica_lag,
                automatic_failover: crate::failover::settings(&opts.design, db_name).is_some(),
            }
        }
    })
}

/// An application command's environment (`HOST`, `PORT`, `WEBSTACK_SERVER`,
/// `DATABASE_URL`), starting the relay to its database for the component's life.
fn command_env(
    server: &Server,
    app: &webstack_topology::App,
    storage: &webstack_app::StorageConfig,
    shutdown: &CancellationToken,
) -> Result<Vec<(String, String)>> {
    let mut env = vec![
        ("HOST".to_string(), server.address.to_string()),
        ("PORT".to_string(), app.port.to_string()),
        ("WEBSTACK_SERVER".to_string(), server.name.clone()),
    ];
    match storage {
        webstack_app::StorageConfig::MySql {
            local,
            endpoints,
            primary,
            user,
            password,
            database,
            ..
        } => {
            // An application command gets the designed primary; the read/write split and
            // promotions are the built-in app's.
            let target = endpoints
                .iter()
                .find(|e| e.name == *primary)
                .expect("the primary is an endpoint");
            webstack_net::relay::spawn_tcp_relay(
                &target.relay_socket,
                *local,
                target.address,
                shutdown.clone(),
            )
            .with_context(|| {
                format!(
                    "cannot start the database relay at {}",
                    target.relay_socket.display()
                )
            })?;
            env.push((
                "DATABASE_URL".into(),
                format!(
                    "mysql://{user}:{password}@localhost/{database}?socket={}",
                    target.relay_socket.display()
                ),
            ));
            env.push((
                "DATABASE_SOCKET".into(),
                target.relay_socket.display().to_string(),
            ));
        }
        webstack_app::StorageConfig::Sqlite { path } => env.push((
            "DATABASE_URL".into(),
            format!("sqlite://{}", path.display()),
        )),
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_broken_release_file_means_the_initial_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.json");
        assert_eq!(Release::read(&path), Release::default());
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Release::read(&path).version, INITIAL_VERSION);
        let r = Release {
            version: "2026-12-01".into(),
            codebase: Some("/srv/site-v2".into()),
        };
        r.write(&path).unwrap();
        assert_eq!(Release::read(&path), r);
    }
}
