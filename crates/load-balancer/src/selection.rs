//! Backend selection: which backend gets the next request. Plain functions over a snapshot
//! of the backends, no I/O, so every algorithm is tested without sockets.

use std::net::IpAddr;

use webstack_topology::Algorithm;

/// What selection needs to know of one backend at the moment of choosing.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub weight: u32,
    /// Requests in flight on it now.
    pub active: u32,
    /// Up, ready (not draining, not in maintenance) and below its maxconn.
    pub eligible: bool,
    pub backup: bool,
}

/// The selection state that persists between picks (the round-robin positions).
#[derive(Debug, Clone)]
pub struct Selector {
    algorithm: Algorithm,
    /// Smooth weighted round robin's current weights, one per backend (nginx's algorithm:
    /// equal weights give a strict rotation, unequal ones an even interleaving).
    current: Vec<i64>,
}

impl Selector {
    pub fn new(algorithm: Algorithm, backends: usize) -> Selector {
        Selector {
            algorithm,
            current: vec![0; backends],
        }
    }

    /// The index of the backend for the next request from `client`, or `None` if no
    /// backend is eligible. Backup backends are considered only when no other is.
    pub fn pick(&mut self, backends: &[Candidate<'_>], client: IpAddr) -> Option<usize> {
        let primary_available = backends.iter().any(|b| b.eligible && !b.backup);
        let allowed = |b: &Candidate<'_>| b.eligible && (b.backup != primary_available);
        match self.algorithm {
            Algorithm::RoundRobin | Algorithm::Weighted => self.smooth_weighted(backends, allowed),
            Algorithm::LeastConn => {
                // Fewest requests in flight per unit of weight; ties go round robin, so an
                // idle pool still spreads evenly.
                let best = backends
                    .iter()
                    .filter(|b| allowed(b))
                    .map(|b| b.active as u64 * 1024 / b.weight.max(1) as u64)
                    .min()?;
                self.smooth_weighted(backends, |b| {
                    allowed(b) && b.active as u64 * 1024 / b.weight.max(1) as u64 == best
                })
            }
            Algorithm::SourceHash => backends
                .iter()
                .enumerate()
                .filter(|(_, b)| allowed(b))
                .max_by_key(|(_, b)| rendezvous(client, b.name, b.weight))
                .map(|(i, _)| i),
            Algorithm::First => backends.iter().position(allowed),
        }
    }

    fn smooth_weighted(
        &mut self,
        backends: &[Candidate<'_>],
        allowed: impl Fn(&Candidate<'_>) -> bool,
    ) -> Option<usize> {
        if self.current.len() != backends.len() {
            self.current = vec![0; backends.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !allowed(b) {
                continue;
            }
            let w = b.weight.max(1) as i64;
            self.current[i] += w;
            total += w;
            if best.is_none_or(|j| self.current[i] > self.current[j]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }
}

/// Highest-random-weight hashing: each (client, backend) pair gets a score and the highest
/// wins, so removing a backend moves only the clients it had (consistent hashing).
fn rendezvous(client: IpAddr, backend: &str, weight: u32) -> u64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    match client {
        IpAddr::V4(v4) => feed(&v4.octets()),
        IpAddr::V6(v6) => feed(&v6.octets()),
    }
    feed(b"/");
    feed(backend.as_bytes());
    // Mix the bits so that similar inputs spread, then let weight scale the score.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    (h >> 8).saturating_mul(weight.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, weight: u32, active: u32) -> Candidate<'_> {
        Candidate {
            name,
            weight,
            active,
            eligible: true,
            backup: false,
        }
    }

    fn shares(sel: &mut Selector, backends: &[Candidate<'_>], n: usize) -> Vec<usize> {
        let mut counts = vec![0; backends.len()];
        for _ in 0..n {
            counts[sel.pick(backends, "127.0.0.1".parse().unwrap()).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_gives_exactly_equal_shares_in_strict_rotation() {
        let b = [c("a", 1, 0), c("b", 1, 0), c("c", 1, 0)];
        let mut sel = Selector::new(Algorithm::RoundRobin, 3);
        let order: Vec<usize> = (0..6)
            .map(|_| sel.pick(&b, "127.0.0.1".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(shares(&mut sel, &b, 300), vec![100, 100, 100]);
    }

    #[test]
    fn weights_are_respected_and_interleaved() {
        let b = [c("a", 3, 0), c("b", 1, 0)];
        let mut sel = Selector::new(Algorithm::Weighted, 2);
        let order: Vec<usize> = (0..4)
            .map(|_| sel.pick(&b, "127.0.0.1".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            order,
            vec![0, 0, 1, 0],
            "smooth: the light backend is not starved to the end"
        );
        assert_eq!(shares(&mut sel, &b, 400), vec![300, 100]);
    }

    #[test]
    fn ineligible_backends_are_skipped_and_backups_wait_for_an_outage() {
        let mut b = vec![
            c("a", 1, 0),
            c("b", 1, 0),
            Candidate {
                backup: true,
                ..c("spare", 1, 0)
            },
        ];
        let mut sel = Selector::new(Algorithm::RoundRobin, 3);
        b[0].eligible = false;
        assert_eq!(shares(&mut sel, &b, 10), vec![0, 10, 0]);
        b[1].eligible = false;
        assert_eq!(shares(&mut sel, &b, 10), vec![0, 0, 10]);
        b[2].eligible = false;
        assert_eq!(sel.pick(&b, "127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn leastconn_prefers_the_idle_backend() {
        let b = [c("busy", 1, 5), c("idle", 1, 0), c("some", 1, 2)];
        let mut sel = Selector::new(Algorithm::LeastConn, 3);
        assert_eq!(sel.pick(&b, "127.0.0.1".parse().unwrap()), Some(1));
        let tied = [c("a", 1, 1), c("b", 1, 1)];
        assert_eq!(shares(&mut sel, &tied, 10), vec![5, 5]);
    }

    #[test]
    fn source_hash_is_sticky_and_consistent() {
        let b = [c("a", 1, 0), c("b", 1, 0), c("c", 1, 0)];
        let mut sel = Selector::new(Algorithm::SourceHash, 3);
        let clients: Vec<IpAddr> = (1..=200u8).map(|i| IpAddr::from([127, 0, 1, i])).collect();
        let first: Vec<usize> = clients
            .iter()
            .map(|ip| sel.pick(&b, *ip).unwrap())
            .collect();
        let again: Vec<usize> = clients
            .iter()
            .map(|ip| sel.pick(&b, *ip).unwrap())
            .collect();
        assert_eq!(first, again, "the same client goes to the same backend");
        for i in 0..3 {
            assert!(
                first.iter().filter(|x| **x == i).count() > 30,
                "spread: {first:?}"
            );
        }
        let mut without_b = b.clone();
        without_b[1].eligible = false;
        for (ip, before) in clients.iter().zip(&first) {
            let after = sel.pick(&without_b, *ip).unwrap();
            if *before != 1 {
                assert_eq!(after, *before, "only b's clients may move");
            }
        }
    }

    #[test]
    fn first_fills_backends_in_order() {
        let mut b = vec![c("a", 1, 0), c("b", 1, 0)];
        let mut sel = Selector::new(Algorithm::First, 2);
        assert_eq!(shares(&mut sel, &b, 5), vec![5, 0]);
        b[0].eligible = false; // at its maxconn
        assert_eq!(shares(&mut sel, &b, 5), vec![0, 5]);
    }
}
