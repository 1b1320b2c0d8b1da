//! Which fault comes next, free of I/O: a seeded sequence (SplitMix64), so a run with the
//! same seed against the same design injects the same faults in the same order. Written
//! here rather than taken from a crate: eight lines, and the sequence must never change
//! under us with a dependency's version.

/// A fault chaos injects, and how it is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL to the server; repaired by starting it.
    Kill,
    /// A graceful stop; repaired by starting it.
    Stop,
    /// SIGSTOP; repaired by SIGCONT.
    Pause,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "kill" => Some(Kind::Kill),
            "stop" => Some(Kind::Stop),
            "pause" => Some(Kind::Pause),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Stop => "stop",
            Kind::Pause => "pause",
        }
    }
}

pub struct Schedule {
    state: u64,
    kinds: Vec<Kind>,
    servers: Vec<String>,
}

impl Schedule {
    /// Faults of `kinds` on `servers`, in an order fixed by `seed`.
    pub fn new(seed: u64, kinds: Vec<Kind>, servers: Vec<String>) -> Schedule {
        Schedule {
            state: seed,
            kinds,
            servers,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next fault and its server.
    pub fn next_fault(&mut self) -> (Kind, String) {
        let k = (self.next_u64() % self.kinds.len() as u64) as usize;
        let s = (self.next_u64() % self.servers.len() as u64) as usize;
        (self.kinds[k], self.servers[s].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_its_faults_and_another_differs() {
        let servers: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let kinds = vec![Kind::Kill, Kind::Stop, Kind::Pause];
        let run = |seed| {
            let mut s = Schedule::new(seed, kinds.clone(), servers.clone());
            (0..8).map(|_| s.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(
            run(7)
                .iter()
                .map(|(_, s)| s)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        );
    }
}
