//! The database component: a supervised mariadbd behind the server's firewall, with a
//! relay per peer of its cluster so replication connections leave from this server's
//! address; its state goes to node.json. On a reload, app servers the new design adds
//! get their accounts.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Design, Server};

use crate::{
    firewall, log_rotation, read_password, read_secret, replication_settings, ComponentState,
    NodeOptions, StatusFile, APP_DATABASE, APP_DB_USER,
};

pub(crate) fn start(
    opts: &NodeOptions,
    server: &Server,
    port: u16,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<Arc<Database>> {
    let listen = SocketAddr::new(server.address, port);
    let app_hosts = app_hosts(&opts.design, &server.name);
    let config = webstack_database::DatabaseConfig {
        server_name: server.name.clone(),
        listen,
        dir: opts.layout.server_dir(&server.name).join("database"),
        cache_dir: opts.cache_dir.clone(),
        app_user: APP_DB_USER.into(),
        app_password: read_password(&opts.layout)?,
        app_database: APP_DATABASE.into(),
        app_hosts: app_hosts.clone(),
        replication: replication_settings(
            &opts.design,
            &opts.layout,
            &server.name,
            read_secret(&opts.layout.replication_password())?,
        ),
        log_rotation: log_rotation(&opts.design),
    };
    // mariadbd listens only on its Unix socket; this is its TCP port, behind the firewall.
    let listener = firewall::bind(listen)?;
    // Its replication connections to each peer of the cluster leave through a relay of
    // this node, from this server's address (MariaDB cannot bind one).
    let mut listens = vec![listen];
    for peer in opts.design.database_members(&server.name) {
        let Some(relay) = opts
            .design
            .replication_relay(&server.name, &peer)
            .filter(|_| peer != server.name)
        else {
            continue;
        };
        let Some(target) = opts
            .design
            .server(&peer)
            .and_then(|p| Some(SocketAddr::new(p.address, p.database.as_ref()?.port)))
        else {
            continue;
        };
        webstack_net::spawn_tcp_forward(
            firewall::bind(relay)?,
            server.address,
            target,
            shutdown.clone(),
        );
        listens.push(relay);
    }
    status.add("database", listens, ComponentState::Starting);
    let me = Arc::new(Database {
        server: server.name.clone(),
        config: config.clone(),
        granted: Mutex::new(app_hosts),
    });
    if let Some(settings) = crate::failover::settings(&opts.design, &server.name) {
        crate::failover::start(opts, &server.name, settings, tasks, shutdown);
    }
    let (status, shutdown) = (status.clone(), shutdown.clone());
    tasks.spawn(async move {
        let events = DatabaseStatus { status };
        Ok(webstack_database::run(config, listener, shutdown, &events).await?)
    });
    Ok(me)
}

/// The app servers that use `server`'s database by name; each gets a grant.
pub(crate) fn app_hosts(design: &Design, server: &str) -> Vec<IpAddr> {
    design
        .servers
        .iter()
        .filter(|s| {
            s.app
                .as_ref()
                .is_some_and(|a| a.database.as_deref() == Some(server))
        })
        .map(|s| s.address)
        .collect()
}

/// The database component, as a reload sees it: app servers a new design adds get their
/// accounts.
pub(crate) struct Database {
    server: String,
    config: webstack_database::DatabaseConfig,
    granted: Mutex<Vec<IpAddr>>,
}

impl Database {
    /// Grants the app servers `design` adds; true if it did. Only the primary writes them
    /// (the replicas get them by replication).
    pub(crate) async fn reload(&self, design: &Design) -> Result<bool> {
        let wanted = app_hosts(design, &self.server);
        let new: Vec<IpAddr> = {
            let granted = self.granted.lock().expect("grants lock");
            wanted
                .into_iter()
                .filter(|h| !granted.contains(h))
                .collect()
        };
        if new.is_empty() {
            return Ok(false);
        }
        if !webstack_database::grant_app_hosts(&self.config, &new).await? {
            return Ok(false);
        }
        self.granted.lock().expect("grants lock").extend(new);
        Ok(true)
    }
}

struct DatabaseStatus {
    status: Arc<StatusFile>,
}

impl webstack_database::DatabaseEvents for DatabaseStatus {
    fn started(&self, pid: u32) {
        self.status
            .set("database", ComponentState::Starting, Some(pid));
    }
    fn ready(&self) {
        let pid = self
            .status
            .snapshot()
            .components
            .iter()
            .find(|c| c.kind == "database")
            .and_then(|c| c.child_pid);
        self.status.set("database", ComponentState::Ready, pid);
    }
    fn stopped(&self) {
        self.status
            .set("database", ComponentState::Restarting, None);
    }
    fn replication(&self, status: webstack_database::ReplicationStatus) {
        self.status.set_replication("database", status);
    }
}
