//! Whether the site still works when some components are down: a name resolves, a request
//! reaches a web server and an app server, and the app reaches a writable database. The
//! one model behind the single-point-of-failure search and the availability estimate.

use webstack_topology::{ComponentKind, DatabaseRole, Design, RecordTarget, Storage};

/// How far a request got before the design failed it, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    NoNameServer,
    NoAddress,
    NoWebServer,
    NoAppServer,
    NoDatabase,
}

impl Broken {
    pub fn explain(&self) -> &'static str {
        match self {
            Broken::NoNameServer => "no name server of the zone answers, so www cannot be resolved",
            Broken::NoAddress => "www no longer leads to any server that takes HTTP",
            Broken::NoWebServer => "no web server is left to take the requests",
            Broken::NoAppServer => "no app server is left behind the web servers",
            Broken::NoDatabase => "the app servers have no writable database left",
        }
    }
}

/// True if the site serves with the components `down` says are down.
pub fn serves(design: &Design, down: &dyn Fn(&str, ComponentKind) -> bool) -> Result<(), Broken> {
    let up = |server: &str, kind: ComponentKind| -> bool {
        design
            .server(server)
            .is_some_and(|s| s.components().contains(&kind))
            && !down(server, kind)
    };
    if !design
        .dns
        .name_servers()
        .iter()
        .any(|(name, _)| !down(name, ComponentKind::Dns))
    {
        return Err(Broken::NoNameServer);
    }
    let record = design
        .dns
        .records
        .iter()
        .find(|r| r.name == "www")
        .or_else(|| design.dns.records.first())
        .ok_or(Broken::NoAddress)?;
    let mut entries: Vec<&str> = Vec::new();
    for target in &record.targets {
        match target {
            RecordTarget::Server(name) => entries.push(name),
            // A floating IP is as good as any of its holders: failover moves it.
            RecordTarget::FloatingIp(name) => {
                if let Some(f) = design.floating_ip(name) {
                    entries.extend(
                        f.servers
                            .iter()
                            .map(String::as_str)
                            .filter(|s| up(s, ComponentKind::LoadBalancer)),
                    );
                }
            }
            RecordTarget::Address(ip) => entries.extend(
                design
                    .servers
                    .iter()
                    .filter(|s| s.address == *ip)
                    .map(|s| s.name.as_str()),
            ),
        }
    }
    let entries: Vec<&str> = entries
        .into_iter()
        .filter(|s| up(s, ComponentKind::LoadBalancer) || up(s, ComponentKind::Web))
        .collect();
    if entries.is_empty() {
        return Err(Broken::NoAddress);
    }
    let mut webs: Vec<&str> = Vec::new();
    for e in &entries {
        let server = design.server(e).expect("entries exist");
        match &server.load_balancer {
            Some(lb) if up(e, ComponentKind::LoadBalancer) => webs.extend(
                lb.backends
                    .iter()
                    .map(|b| b.server.as_str())
                    .filter(|b| up(b, ComponentKind::Web)),
            ),
            _ if up(e, ComponentKind::Web) => webs.push(e),
            _ => {}
        }
    }
    if webs.is_empty() {
        return Err(Broken::NoWebServer);
    }
    let apps: Vec<&str> = webs
        .iter()
        .filter_map(|w| design.server(w)?.web.as_ref())
        .flat_map(|web| web.upstreams.iter().map(String::as_str))
        .filter(|a| up(a, ComponentKind::App))
        .collect();
    if apps.is_empty() {
        return Err(Broken::NoAppServer);
    }
    // A replica counts as a way back to writes: promoting it (`webstack db promote`)
    // restores them. The review reports that this failover is manual.
    let promotable = |primary: &str| {
        design.servers.iter().any(|r| {
            r.database
                .as_ref()
                .is_some_and(|d| matches!(&d.role, DatabaseRole::Replica { of } if of == primary))
                && up(&r.name, ComponentKind::Database)
        })
    };
    let writable = apps.iter().any(|a| {
        let app = design
            .server(a)
            .and_then(|s| s.app.as_ref())
            .expect("app servers have an app");
        match (app.storage, &app.database) {
            (Storage::Sqlite, _) => true,
            (Storage::MySql, Some(db)) => up(db, ComponentKind::Database) || promotable(db),
            (Storage::MySql, None) => false,
        }
    });
    if writable {
        Ok(())
    } else {
        Err(Broken::NoDatabase)
    }
}
