//! The web server component: its sockets are bound once, and each configuration runs as
//! an instance on duplicates of them, so a reload that changes the upstreams or the
//! static files' folder puts a new instance in service while the old one finishes its
//! requests (`reload::Swap`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Codebase, Design, Server};

use crate::reload::{web_key, Swap, WebKey};
use crate::{firewall, log_rotation, monitoring, tls, ComponentState, NodeOptions, StatusFile};

pub(crate) struct Web {
    server: String,
    dir: PathBuf,
    listener: webstack_net::Listener,
    https: Option<webstack_net::http::Https>,
    swap: Arc<Swap<WebKey>>,
}

pub(crate) fn start(
    opts: &NodeOptions,
    server: &Server,
    web: &webstack_topology::Web,
    dir: &Path,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<Arc<Web>> {
    let addr = SocketAddr::new(server.address, web.port);
    let listener = firewall::bind(addr)?;
    status.add("web", vec![addr], ComponentState::Ready);
    let https = web
        .tls
        .as_ref()
        .map(|t| tls::start_endpoint(opts, server, "web", t, status, tasks, shutdown))
        .transpose()?;
    if let Some(h) = &https {
        status.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.kind == "web") {
                c.listen.push(h.listener.local_addr());
            }
        });
    }
    let (swap, failed) = Swap::new("web server", shutdown);
    let me = Arc::new(Web {
        server: server.name.clone(),
        dir: dir.to_path_buf(),
        listener,
        https,
        swap: swap.clone(),
    });
    me.reload(&opts.design)?;
    tasks.spawn(swap.run(failed));
    Ok(me)
}

impl Web {
    /// Puts `design`'s configuration in service unless it runs already; true if it did.
    pub(crate) fn reload(&self, design: &Design) -> Result<bool> {
        let server = design
            .server(&self.server)
            .context("the server is no longer in the design")?;
        let key = web_key(design, server).context("the server no longer runs a web server")?;
        if self.swap.runs(&key) {
            return Ok(false);
        }
        let root = match (&key.root, &design.codebase) {
            (Some(root), _) => root.clone(),
            (None, Codebase::Builtin(_)) => crate::write_builtin_public(&self.dir)?,
            (None, Codebase::Path { path, .. }) => path.join("public"),
        };
        let config = webstack_web::WebConfig {
            server_name: self.server.clone(),
            local_address: server.address,
            root,
            upstreams: key.upstreams.clone(),
            access_log: Some(self.dir.join("access.log")),
            log_rotation: log_rotation(design),
            metrics: monitoring::http(),
            limits: Default::default(),
            proxy: Default::default(),
        };
        eprintln!(
            "web: listening on {}, static files from {}, proxying to {:?}",
            self.listener.local_addr(),
            config.root.display(),
            config.upstreams
        );
        let listener = self.listener.try_clone()?;
        let https = self.https.as_ref().map(|h| h.try_clone()).transpose()?;
        self.swap.start(key, |token| async move {
            Ok(webstack_web::run(config, listener, https, token).await?)
        });
        Ok(true)
    }
}
