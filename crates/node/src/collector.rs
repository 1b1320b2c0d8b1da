//! The server's collector (`[servers.NAME.collector]`): the monitoring service its
//! design's agents report to. The node binds its port behind the firewall and hands it
//! the design drawn as a whiteboard for the dashboard.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_collector::{BoardServer, Bounds, CollectorConfig, Tier, Whiteboard};
use webstack_topology::{Collector, Design, Server};

use crate::status::{ComponentState, StatusFile};

pub fn start(
    design: &Design,
    server: &Server,
    c: &Collector,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let addr = SocketAddr::new(server.address, c.port);
    let listener = crate::firewall::bind(addr)?;
    status.add("collector", vec![addr], ComponentState::Ready);
    eprintln!(
        "collector: dashboard on http://{addr}/, {} alert rules, keeping {:?} of metrics, {} logs, {} trace spans",
        c.alerts.len(),
        c.window,
        c.max_logs,
        c.max_traces
    );
    let config = CollectorConfig {
        server_name: server.name.clone(),
        bounds: Bounds {
            window: c.window,
            max_logs: c.max_logs,
            max_traces: c.max_traces,
        },
        rules: c.alerts.clone(),
        notify: c.notify.clone(),
        whiteboard: whiteboard(design, &server.name),
    };
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        webstack_collector::run(config, listener, shutdown)
            .await
            .map_err(anyhow::Error::msg)
    });
    Ok(())
}

/// The design's servers grouped into tiers by what they run, entry first, as the
/// curriculum draws them.
pub fn whiteboard(design: &Design, collector: &str) -> Whiteboard {
    let mut tiers: Vec<Tier> = Vec::new();
    let mut servers: Vec<&Server> = design.servers.iter().collect();
    // Load balancers, then web, app and database servers, then the monitoring service.
    servers.sort_by_key(|s| {
        (
            s.load_balancer.is_none(),
            s.web.is_none(),
            s.app.is_none(),
            s.database.is_none(),
            s.name.clone(),
        )
    });
    for s in servers {
        let components: Vec<String> = s
            .components()
            .into_iter()
            .filter(|k| {
                !matches!(
                    k,
                    webstack_topology::ComponentKind::Firewall
                        | webstack_topology::ComponentKind::Monitoring
                )
            })
            .map(|k| k.key().to_string())
            .collect();
        let name = components.join(" + ").replace('_', " ");
        let board = BoardServer {
            name: s.name.clone(),
            address: s.address.to_string(),
            components,
            monitored: s
                .monitoring
                .as_ref()
                .is_some_and(|m| m.collector.as_deref() == Some(collector)),
        };
        match tiers.iter_mut().find(|t| t.name == name) {
            Some(t) => t.servers.push(board),
            None => tiers.push(Tier {
                name,
                servers: vec![board],
            }),
        }
    }
    // The name server first, as the user meets it first.
    tiers.insert(
        0,
        Tier {
            name: "name server".into(),
            servers: design
                .dns
                .name_servers()
                .into_iter()
                .map(|(name, address)| BoardServer {
                    name,
                    address: address.to_string(),
                    components: vec!["dns".into()],
                    monitored: design
                        .dns
                        .monitoring
                        .as_ref()
                        .is_some_and(|m| m.collector.as_deref() == Some(collector)),
                })
                .collect(),
        },
    );
    Whiteboard {
        title: format!(
            "{} · www.{} ({})",
            design.name,
            design.domain,
            design.description.as_deref().unwrap_or("")
        ),
        tiers,
    }
}
