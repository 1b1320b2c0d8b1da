//! The design's availability from its structure: every combination of servers up and down
//! is weighed by its probability, and counted if the site still serves (`paths::serves`).
//! Series tiers, parallel redundancy and failover all follow from that one rule.

use serde::Serialize;
use webstack_topology::Design;

use crate::paths::serves;

/// Exact enumeration up to this many servers (2^16 states); beyond, a seeded sample.
const EXACT_UP_TO: usize = 16;
const SAMPLES: u64 = 200_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Availability {
    /// Per server, as assumed.
    pub per_server: f64,
    pub availability: f64,
    /// -log10(1 - availability): 3.0 is "three nines".
    pub nines: f64,
    pub downtime_minutes_per_year: f64,
    pub method: &'static str,
}

pub fn estimate(design: &Design, per_server: f64) -> Availability {
    // The name servers count like any other server: each is a machine that can be down.
    let name_servers = design.dns.name_servers();
    let names: Vec<&str> = name_servers
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(design.servers.iter().map(|s| s.name.as_str()))
        .collect();
    let n = names.len();
    let works = |mask: u64| {
        serves(design, &|server, _| {
            names
                .iter()
                .position(|x| *x == server)
                .is_some_and(|i| mask & (1 << i) == 0)
        })
        .is_ok()
    };
    let (availability, method) = if n <= EXACT_UP_TO {
        let mut total = 0.0;
        for mask in 0..(1u64 << n) {
            if works(mask) {
                let up = mask.count_ones() as i32;
                total += per_server.powi(up) * (1.0 - per_server).powi(n as i32 - up);
            }
        }
        (total, "exact")
    } else {
        // xorshift64*: a fixed seed, so the same design always gets the same estimate.
        let mut state: u64 = 0x9E3779B97F4A7C15;
        let mut ok = 0u64;
        for _ in 0..SAMPLES {
            let mut mask = 0u64;
            for i in 0..n.min(64) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = (state.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64;
                if r < per_server {
                    mask |= 1 << i;
                }
            }
            ok += u64::from(works(mask));
        }
        (ok as f64 / SAMPLES as f64, "sampled")
    };
    let unavailable = (1.0 - availability).max(0.0);
    Availability {
        per_server,
        availability,
        nines: if unavailable <= 0.0 {
            f64::INFINITY
        } else {
            -unavailable.log10()
        },
        downtime_minutes_per_year: unavailable * 365.25 * 24.0 * 60.0,
        method,
    }
}

/// `8h 45m` or `52.6 min` for people.
pub fn human_downtime(minutes: f64) -> String {
    if minutes >= 120.0 {
        format!(
            "{}h {:02}m",
            (minutes / 60.0) as u64,
            (minutes % 60.0) as u64
        )
    } else {
        format!("{minutes:.1} min")
    }
}
