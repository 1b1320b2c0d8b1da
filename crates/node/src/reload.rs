//! Reloading a changed design into a running server (`webstack reload` sends the node
//! SIGHUP), as HAProxy's seamless reload and nginx's `-s reload` do: what can change live
//! changes without a refused connection or a failed request, and the rest is named as
//! needing a restart.
//!
//! - [`plan`] (pure) says what a new design changes on one server, and which of it the
//!   node applies live: the load balancer's backends, weights, algorithm, health checks
//!   and limits; the web server's upstreams and root; the firewall's rules.
//! - [`Swap`] runs a front component as one instance at a time on sockets it keeps. A
//!   reload that changes the component's configuration starts a new instance on
//!   duplicates of the sockets (`Listener::try_clone`) and tells the old one to stop; the
//!   old one stops accepting and finishes the requests it has (HAProxy's `-sf`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webstack_topology::{Codebase, Design, Server};

/// What a new design changes on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Applied live by the running node.
    pub live: Vec<String>,
    /// Needs the server restarted (or started, or stopped).
    pub restart: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

/// The load balancer's configuration as far as a reload can change it: its settings and
/// its backends as addresses.
pub(crate) fn lb_key(design: &Design, server: &Server) -> Option<LbKey> {
    let lb = server.load_balancer.as_ref()?;
    let backends = lb
        .backends
        .iter()
        .filter_map(|b| {
            let s = design.server(&b.server)?;
            let web = s.web.as_ref()?;
            Some(webstack_load_balancer::BackendConfig {
                name: b.server.clone(),
                addr: SocketAddr::new(s.address, web.port),
                tls_addr: web.tls.as_ref().map(|t| SocketAddr::new(s.address, t.port)),
                weight: b.weight,
                backup: b.backup,
            })
        })
        .collect();
    Some(LbKey {
        settings: lb.clone(),
        backends,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LbKey {
    pub settings: webstack_topology::LoadBalancer,
    pub backends: Vec<webstack_load_balancer::BackendConfig>,
}

/// The web server's configuration as far as a reload can change it.
pub(crate) fn web_key(design: &Design, server: &Server) -> Option<WebKey> {
    let web = server.web.as_ref()?;
    let upstreams = web
        .upstreams
        .iter()
        .filter_map(|name| design.server(name))
        .filter_map(|s| s.app.as_ref().map(|a| SocketAddr::new(s.address, a.port)))
        .collect();
    Some(WebKey {
        root: web.root.clone(),
        codebase_public: match &design.codebase {
            Codebase::Builtin(_) => None,
            Codebase::Path { path, .. } => Some(path.join("public")),
        },
        upstreams,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WebKey {
    pub root: Option<PathBuf>,
    pub codebase_public: Option<PathBuf>,
    pub upstreams: Vec<SocketAddr>,
}

/// What `new` changes on `server` compared with `old`, the design it runs.
pub fn plan(old: &Design, new: &Design, server: &str) -> Plan {
    let mut p = Plan::default();
    let (o, n) = match (old.server(server), new.server(server)) {
        (None, None) => return p,
        (None, Some(_)) => {
            p.restart
                .push(format!("{server} is a new server: it starts"));
            return p;
        }
        (Some(_), None) => {
            p.restart.push(format!(
                "{server} is no longer in the design: it stops, after the others no longer send it traffic"
            ));
            return p;
        }
        (Some(o), Some(n)) => (o, n),
    };
    if o.address != n.address {
        p.restart.push(format!(
            "{server}'s address changes ({} → {})",
            o.address, n.address
        ));
        return p;
    }
    let restart = |p: &mut Plan, what: &str| p.restart.push(format!("{server}: {what}"));
    for (kind, had, has) in [
        (
            "a load balancer",
            o.load_balancer.is_some(),
            n.load_balancer.is_some(),
        ),
        ("a web server", o.web.is_some(), n.web.is_some()),
        ("an app server", o.app.is_some(), n.app.is_some()),
        ("a database", o.database.is_some(), n.database.is_some()),
        ("a collector", o.collector.is_some(), n.collector.is_some()),
        (
            "a monitoring agent",
            o.monitoring.is_some(),
            n.monitoring.is_some(),
        ),
    ] {
        match (had, has) {
            (false, true) => restart(&mut p, &format!("{kind} is added")),
            (true, false) => restart(&mut p, &format!("{kind} is removed")),
            _ => {}
        }
    }
    if let (Some(a), Some(b)) = (&o.load_balancer, &n.load_balancer) {
        if (a.port, a.stats_port, a.mode, &a.tls) != (b.port, b.stats_port, b.mode, &b.tls) {
            restart(&mut p, "the load balancer's ports, mode or TLS change");
        } else if lb_key(old, o) != lb_key(new, n) {
            p.live.push(describe_lb(old, o, new, n));
        }
    }
    if let (Some(a), Some(b)) = (&o.web, &n.web) {
        if (a.port, &a.tls) != (b.port, &b.tls) {
            restart(&mut p, "the web server's port or TLS change");
        } else if web_key(old, o) != web_key(new, n) {
            let (ka, kb) = (web_key(old, o), web_key(new, n));
            let ups = |k: &Option<WebKey>| {
                k.as_ref()
                    .map(|k| {
                        k.upstreams
                            .iter()
                            .map(|u| u.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            if ups(&ka) != ups(&kb) {
                p.live
                    .push(format!("web server: upstreams {} → {}", ups(&ka), ups(&kb)));
            } else {
                p.live.push("web server: static files' folder".into());
            }
        }
    }
    for (kind, changed) in [
        ("app server", o.app != n.app),
        ("database", o.database != n.database),
        ("collector", o.collector != n.collector),
        ("monitoring agent", o.monitoring != n.monitoring),
    ] {
        if changed && !p.restart.iter().any(|r| r.contains(kind)) {
            restart(&mut p, &format!("the {kind}'s settings change"));
        }
    }
    let hosts = |d: &Design| crate::database::app_hosts(d, server);
    let added: Vec<String> = hosts(new)
        .into_iter()
        .filter(|h| !hosts(old).contains(h))
        .map(|h| h.to_string())
        .collect();
    if n.database.is_some() && !added.is_empty() {
        p.live.push(format!(
            "database: accounts for the app servers at {}",
            added.join(", ")
        ));
    }
    if old.floating_ip_of(server) != new.floating_ip_of(server) {
        restart(&mut p, "its floating IP changes");
    }
    let policy = |d: &Design| webstack_firewall::derive(d, server).map(|f| f.rules);
    if let Some(fw) = describe_rules(policy(old).as_deref(), policy(new).as_deref()) {
        p.live.push(fw);
    }
    p
}

/// What changes between two firewall rule lists (`None`: no firewall), or `None` if
/// nothing does.
pub(crate) fn describe_rules(
    old: Option<&[webstack_firewall::Rule]>,
    new: Option<&[webstack_firewall::Rule]>,
) -> Option<String> {
    match (old, new) {
        (a, b) if a == b => None,
        (Some(a), Some(b)) => {
            let added = b.iter().filter(|r| !a.contains(r)).count();
            let removed = a.iter().filter(|r| !b.contains(r)).count();
            Some(format!(
                "firewall: {} rules ({added} added, {removed} removed)",
                b.len()
            ))
        }
        (None, Some(b)) => Some(format!("firewall: on, {} rules", b.len())),
        _ => Some("firewall: off".into()),
    }
}

fn describe_lb(old: &Design, o: &Server, new: &Design, n: &Server) -> String {
    let (a, b) = (
        o.load_balancer.as_ref().expect("compared"),
        n.load_balancer.as_ref().expect("compared"),
    );
    let list = |lb: &webstack_topology::LoadBalancer| {
        lb.backends
            .iter()
            .map(|b| {
                let mut s = b.server.clone();
                if b.weight != 1 {
                    s.push_str(&format!(" weight {}", b.weight));
                }
                if b.backup {
                    s.push_str(" backup");
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut what = Vec::new();
    if a.backends != b.backends {
        what.push(format!("backends {} → {}", list(a), list(b)));
    } else if lb_key(old, o).map(|k| k.backends) != lb_key(new, n).map(|k| k.backends) {
        what.push("backends' addresses".to_string());
    }
    if a.algorithm != b.algorithm {
        what.push(format!("algorithm {:?} → {:?}", a.algorithm, b.algorithm));
    }
    if a.health_check != b.health_check {
        what.push("health checks".into());
    }
    if (
        a.maxconn,
        a.retries,
        a.when_all_down,
        a.proxy_protocol,
        &a.timeouts,
    ) != (
        b.maxconn,
        b.retries,
        b.when_all_down,
        b.proxy_protocol,
        &b.timeouts,
    ) {
        what.push("limits, retries or timeouts".into());
    }
    format!("load balancer: {}", what.join("; "))
}

/// The node's components a reload can change.
#[derive(Default)]
pub(crate) struct Reloadable {
    pub load_balancer: Option<Arc<crate::load_balancer::LoadBalancer>>,
    pub web: Option<Arc<crate::web::Web>>,
    pub database: Option<Arc<crate::database::Database>>,
}

impl Reloadable {
    /// Applies each design that arrives on `designs` until the node stops, starting from
    /// `current`, the one it runs; each outcome goes to the log and to node.json.
    pub async fn run(
        self,
        mut current: Design,
        server: String,
        mut designs: mpsc::UnboundedReceiver<Design>,
        status: Arc<crate::StatusFile>,
        shutdown: CancellationToken,
    ) {
        let mut generation = 0;
        loop {
            let new = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(d) = designs.recv() => d,
                else => return,
            };
            generation += 1;
            let p = plan(&current, &new, &server);
            let mut applied = Vec::new();
            let mut not_applied = p.restart.clone();
            let mut changed = |what: &str, done: Result<bool>| match done {
                Ok(true) => applied.push(what.to_string()),
                Ok(false) => {}
                Err(e) => not_applied.push(format!("{what}: {e:#}")),
            };
            if let Some(fw) = crate::firewall::replace(&new, &server) {
                changed(&fw, Ok(true));
            }
            if let Some(lb) = &self.load_balancer {
                let what = p
                    .live
                    .iter()
                    .find(|l| l.starts_with("load balancer"))
                    .cloned()
                    .unwrap_or_else(|| "load balancer".into());
                changed(&what, lb.reload(&new));
            }
            if let Some(web) = &self.web {
                let what = p
                    .live
                    .iter()
                    .find(|l| l.starts_with("web server"))
                    .cloned()
                    .unwrap_or_else(|| "web server".into());
                changed(&what, web.reload(&new));
            }
            if let Some(db) = &self.database {
                let what = p
                    .live
                    .iter()
                    .find(|l| l.starts_with("database"))
                    .cloned()
                    .unwrap_or_else(|| "database: accounts for new app servers".into());
                changed(&what, db.reload(&new).await);
            }
            for a in &applied {
                eprintln!("reload: {a}");
            }
            for n in &not_applied {
                eprintln!("reload: NOT APPLIED (needs a restart): {n}");
            }
            if applied.is_empty() && not_applied.is_empty() {
                eprintln!("reload: nothing changes on {server}");
            }
            status.update(|s| {
                s.reload = Some(crate::status::ReloadStatus {
                    generation,
                    applied: applied.clone(),
                    not_applied: not_applied.clone(),
                })
            });
            current = new;
        }
    }
}

/// A front component served by one instance at a time; see the module's documentation.
pub(crate) struct Swap<K> {
    what: &'static str,
    shutdown: CancellationToken,
    state: Mutex<SwapState<K>>,
    failed: mpsc::UnboundedSender<anyhow::Error>,
}

struct SwapState<K> {
    key: Option<K>,
    current: CancellationToken,
    instances: Vec<JoinHandle<()>>,
}

impl<K: PartialEq> Swap<K> {
    /// A component named `what` for messages, stopped by `shutdown`. Its task in the
    /// node's tier is `run` with the receiver returned here.
    pub fn new(
        what: &'static str,
        shutdown: &CancellationToken,
    ) -> (Arc<Swap<K>>, mpsc::UnboundedReceiver<anyhow::Error>) {
        let (failed, rx) = mpsc::unbounded_channel();
        let swap = Swap {
            what,
            shutdown: shutdown.clone(),
            state: Mutex::new(SwapState {
                key: None,
                current: CancellationToken::new(),
                instances: Vec::new(),
            }),
            failed,
        };
        (Arc::new(swap), rx)
    }

    /// Whether the instance in service runs `key`.
    pub fn runs(&self, key: &K) -> bool {
        self.state.lock().expect("swap lock").key.as_ref() == Some(key)
    }

    /// Puts an instance for `key` in service; the one before it, if any, is told to stop
    /// and finishes on its own.
    pub fn start<F>(&self, key: K, instance: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let token = self.shutdown.child_token();
        let fut = instance(token.clone());
        let (failed, what, mine) = (self.failed.clone(), self.what, token.clone());
        let handle = tokio::spawn(async move {
            let ended = fut.await;
            if !mine.is_cancelled() {
                let _ = failed.send(
                    ended
                        .err()
                        .unwrap_or_else(|| anyhow::anyhow!("the {what} stopped by itself")),
                );
            } else if let Err(e) = ended {
                eprintln!("{what}: a replaced instance ended with: {e:#}");
            }
        });
        let mut state = self.state.lock().expect("swap lock");
        state.current.cancel();
        state.current = token;
        state.key = Some(key);
        state.instances.retain(|h| !h.is_finished());
        state.instances.push(handle);
    }

    /// The component's task: until the node stops (or an instance fails), then until
    /// every instance has finished.
    pub async fn run(
        self: Arc<Self>,
        mut failed: mpsc::UnboundedReceiver<anyhow::Error>,
    ) -> Result<()> {
        let failure = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            Some(e) = failed.recv() => Some(e),
        };
        let instances = {
            let mut state = self.state.lock().expect("swap lock");
            state.current.cancel();
            std::mem::take(&mut state.instances)
        };
        for i in instances {
            let _ = i.await;
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Design {
        webstack_topology::load(name).unwrap().design
    }

    fn edit(design: &str, change: impl FnOnce(&str) -> String) -> Design {
        let source = change(webstack_topology::shipped_source(design).unwrap());
        webstack_topology::parse_design(&source, "edited", std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn the_same_design_changes_nothing() {
        let d = shipped("distributed");
        for s in ["lb1", "server1", "server2", "dns"] {
            assert!(plan(&d, &d, s).is_empty(), "{s}");
        }
    }

    #[test]
    fn backends_and_algorithm_change_live() {
        let old = shipped("distributed");
        let new = edit("distributed", |s| {
            s.replace(
                "algorithm = \"roundrobin\"\nbackends = [\"server1\", \"server2\"]",
                "algorithm = \"leastconn\"\nbackends = [\"server1\"]",
            )
        });
        let p = plan(&old, &new, "lb1");
        assert!(p.restart.is_empty(), "{p:?}");
        assert_eq!(
            p.live,
            ["load balancer: backends server1, server2 → server1; algorithm RoundRobin → LeastConn"]
        );
        assert!(plan(&old, &new, "server1").is_empty());
    }

    #[test]
    fn ports_components_and_new_servers_need_a_restart() {
        let old = shipped("distributed");
        let moved = edit("distributed", |s| {
            s.replacen("port = 8080", "port = 8081", 1)
        });
        let p = plan(&old, &moved, "lb1");
        assert!(p.live.is_empty() && p.restart.len() == 1, "{p:?}");
        let more = edit("distributed", |s| {
            format!("{s}\n[servers.server3]\naddress = \"127.10.1.13\"\nweb = {{ port = 8080, upstreams = [\"server3\"] }}\napp = {{ port = 8000, database = \"server1\" }}\n")
        });
        assert_eq!(
            plan(&old, &more, "server3").restart,
            ["server3 is a new server: it starts"]
        );
        // The database's firewall now admits server3's app server: a live change.
        let db = plan(&old, &more, "server1");
        assert!(db.restart.is_empty(), "{db:?}");
        assert!(
            plan(&more, &old, "server3").restart[0].contains("no longer in the design"),
            "{:?}",
            plan(&more, &old, "server3")
        );
    }
}
