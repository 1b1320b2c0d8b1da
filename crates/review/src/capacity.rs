//! A simple capacity model: which tier saturates first for a request mix. Its assumptions
//! are rough per-server throughputs on one modest core, written here so they can be argued
//! with; what matters is the comparison between tiers, not the absolute numbers.

use serde::Serialize;
use webstack_topology::{DatabaseRole, Design};

use crate::findings::{Finding, Kind, Severity};

/// Requests per second one server of each role handles, by assumption.
pub const LB_RPS: f64 = 20_000.0;
pub const WEB_STATIC_RPS: f64 = 10_000.0;
pub const WEB_PROXY_RPS: f64 = 5_000.0;
pub const APP_RPS: f64 = 500.0;
pub const DB_READS_PER_SEC: f64 = 5_000.0;
pub const DB_WRITES_PER_SEC: f64 = 1_000.0;

/// Shares of requests that are static files, reads (a page or API read: one query) and
/// writes (one insert); they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mix {
    pub static_files: f64,
    pub reads: f64,
    pub writes: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            static_files: 0.2,
            reads: 0.7,
            writes: 0.1,
        }
    }
}

impl Mix {
    /// Parses `static=20,reads=70,writes=10` (any positive numbers; they are normalised).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            static_files: 0.0,
            reads: 0.0,
            writes: 0.0,
        };
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=NUMBER"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not a number"))?;
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{v} is not a share"));
            }
            match k.trim() {
                "static" => mix.static_files = v,
                "reads" => mix.reads = v,
                "writes" => mix.writes = v,
                other => return Err(format!("{other:?} is not one of static, reads, writes")),
            }
        }
        let total = mix.static_files + mix.reads + mix.writes;
        if total <= 0.0 {
            return Err("the shares add up to nothing".into());
        }
        Ok(Mix {
            static_files: mix.static_files / total,
            reads: mix.reads / total,
            writes: mix.writes / total,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TierCapacity {
    pub tier: &'static str,
    pub servers: usize,
    /// Site requests per second the tier can take.
    pub requests_per_sec: f64,
}

pub fn tiers(design: &Design, mix: &Mix) -> Vec<TierCapacity> {
    let count = |f: &dyn Fn(&webstack_topology::Server) -> bool| {
        design.servers.iter().filter(|s| f(s)).count()
    };
    let lbs = count(&|s| s.load_balancer.is_some());
    // A floating IP pair has one active load balancer; A records to several spread load.
    let active_lbs = if design.floating_ips.is_empty() {
        lbs
    } else {
        design.floating_ips.len().min(lbs)
    };
    let webs = count(&|s| s.web.is_some());
    let apps = count(&|s| s.app.is_some());
    let dbs = count(&|s| s.database.is_some());
    let primaries = count(&|s| {
        s.database
            .as_ref()
            .is_some_and(|d| d.role == DatabaseRole::Primary)
    })
    .max(1);
    let dynamic = mix.reads + mix.writes;
    let per = |share: f64, rate: f64| {
        if share > 0.0 {
            rate / share
        } else {
            f64::INFINITY
        }
    };
    let mut out = Vec::new();
    if lbs > 0 {
        out.push(TierCapacity {
            tier: "load balancer",
            servers: active_lbs,
            requests_per_sec: active_lbs as f64 * LB_RPS,
        });
    }
    let web_one = 1.0 / (mix.static_files / WEB_STATIC_RPS + dynamic / WEB_PROXY_RPS);
    out.push(TierCapacity {
        tier: "web",
        servers: webs,
        requests_per_sec: webs as f64 * web_one,
    });
    out.push(TierCapacity {
        tier: "app",
        servers: apps,
        requests_per_sec: apps as f64 * per(dynamic, APP_RPS),
    });
    if dbs > 0 {
        // Writes go to the primary; reads are spread over the primary and its replicas.
        let writes = primaries as f64 * per(mix.writes, DB_WRITES_PER_SEC);
        let reads = dbs as f64 * per(mix.reads, DB_READS_PER_SEC);
        let db = 1.0 / (1.0 / writes + 1.0 / reads);
        out.push(TierCapacity {
            tier: "database",
            servers: dbs,
            requests_per_sec: db,
        });
    }
    out
}

/// The tier that saturates first, as an informational finding.
pub fn bottleneck(design: &Design, mix: &Mix) -> Finding {
    let tiers = tiers(design, mix);
    let first = tiers
        .iter()
        .min_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec))
        .expect("a design has a web tier");
    let table: Vec<String> = tiers
        .iter()
        .map(|t| {
            format!(
                "{} {:.0} req/s on {} server(s)",
                t.tier, t.requests_per_sec, t.servers
            )
        })
        .collect();
    Finding {
        kind: Kind::Capacity,
        severity: Severity::Info,
        title: format!("the {} tier saturates first, at about {:.0} requests/s", first.tier, first.requests_per_sec),
        servers: vec![],
        components: vec![first.tier.to_string()],
        why: format!(
            "For a mix of {:.0}% static files, {:.0}% reads and {:.0}% writes: {}. (Assumed per server: load balancer {LB_RPS:.0} req/s, web {WEB_STATIC_RPS:.0} static or {WEB_PROXY_RPS:.0} proxied, app {APP_RPS:.0}, database {DB_READS_PER_SEC:.0} reads or {DB_WRITES_PER_SEC:.0} writes; tiers sharing a server are counted as if they did not.)",
            mix.static_files * 100.0, mix.reads * 100.0, mix.writes * 100.0, table.join("; ")
        ),
        fix: format!("add servers to the {} tier first; `webstack bench` measures the real figure", first.tier),
    }
}
