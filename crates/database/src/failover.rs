//! Automatic failover's decision, free of I/O: whether a replica should promote itself,
//! given what it and the others observed. As orchestrator does, a primary counts as
//! failed only when the observers agree: this replica cannot reach it for a set time,
//! and every app server that answers cannot reach it either (one that still can means
//! the problem is between this replica and the primary, not the primary). Of several
//! replicas only the most advanced (by GTID) promotes itself. No second automatic
//! failover follows within the hold-off, and every verdict says why.

use std::time::{Duration, Instant};

use crate::replication::gtid_covers;

/// One round of observations by a replica.
#[derive(Debug, Clone)]
pub struct Round {
    pub now: Instant,
    /// This replica's own probe of the primary (a MySQL handshake) succeeded.
    pub primary_answers: bool,
    /// Each app server's view: `Some(true)` it reaches the primary, `Some(false)` it
    /// cannot, `None` it did not answer.
    pub apps: Vec<(String, Option<bool>)>,
    /// This replica's name and GTID position (what it has applied and received).
    pub me: (String, String),
    /// The other replicas that could be promoted, with their positions (`None`: unknown).
    pub others: Vec<(String, Option<String>)>,
    /// Time since the last automatic failover of this cluster, if there was one.
    pub since_last_failover: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The primary answers.
    Healthy,
    /// It does not answer this replica, not for long enough yet.
    Suspect(String),
    /// It looks failed, and this replica still does not act: why.
    Hold(String),
    /// This replica should promote itself, for these reasons.
    Promote(Vec<String>),
}

/// A replica's watch on its primary.
#[derive(Debug, Clone)]
pub struct Detector {
    /// How long the primary must be unreachable before it counts as failed.
    pub after: Duration,
    pub hold_off: Duration,
    unreachable_since: Option<Instant>,
}

impl Detector {
    pub fn new(after: Duration, hold_off: Duration) -> Detector {
        Detector {
            after,
            hold_off,
            unreachable_since: None,
        }
    }

    pub fn observe(&mut self, r: &Round) -> Verdict {
        if r.primary_answers {
            self.unreachable_since = None;
            return Verdict::Healthy;
        }
        let since = *self.unreachable_since.get_or_insert(r.now);
        let down_for = r.now.saturating_duration_since(since);
        if down_for < self.after {
            return Verdict::Suspect(format!(
                "the primary has not answered {} for {} ms; it counts as failed after {} ms",
                r.me.0,
                down_for.as_millis(),
                self.after.as_millis()
            ));
        }
        let reaching: Vec<&str> = r
            .apps
            .iter()
            .filter(|(_, v)| *v == Some(true))
            .map(|(n, _)| n.as_str())
            .collect();
        if !reaching.is_empty() {
            return Verdict::Hold(format!(
                "{} still reach{} the primary: the trouble is between {} and it, not the primary",
                reaching.join(", "),
                if reaching.len() == 1 { "es" } else { "" },
                r.me.0
            ));
        }
        let agreeing: Vec<&str> = r
            .apps
            .iter()
            .filter(|(_, v)| *v == Some(false))
            .map(|(n, _)| n.as_str())
            .collect();
        if !r.apps.is_empty() && agreeing.is_empty() {
            return Verdict::Hold(format!(
                "no app server answers ({}) to confirm the primary is gone",
                r.apps
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (name, position) in &r.others {
            let Some(position) = position else { continue };
            let ahead = gtid_covers(position, &r.me.1) && !gtid_covers(&r.me.1, position);
            let tie_first = position == &r.me.1 && *name < r.me.0;
            if ahead || tie_first {
                return Verdict::Hold(format!(
                    "{name} is {} (GTID {position} against {}): it promotes itself",
                    if ahead {
                        "more advanced"
                    } else {
                        "as advanced and comes first"
                    },
                    r.me.1
                ));
            }
        }
        if let Some(ago) = r.since_last_failover.filter(|a| *a < self.hold_off) {
            return Verdict::Hold(format!(
                "the last automatic failover was {} s ago; no second one within {} s (fail over by hand with `webstack db promote`)",
                ago.as_secs(),
                self.hold_off.as_secs()
            ));
        }
        let mut why = vec![format!(
            "the primary has not answered {} for {} ms",
            r.me.0,
            down_for.as_millis()
        )];
        if !agreeing.is_empty() {
            why.push(format!("{} cannot reach it either", agreeing.join(", ")));
        }
        why.push(format!(
            "{} is the most advanced replica (GTID {})",
            r.me.0, r.me.1
        ));
        Verdict::Promote(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(t0: Instant, ms: u64, answers: bool) -> Round {
        Round {
            now: t0 + Duration::from_millis(ms),
            primary_answers: answers,
            apps: vec![("app1".into(), Some(false)), ("app2".into(), None)],
            me: ("db2".into(), "0-1-100".into()),
            others: vec![],
            since_last_failover: None,
        }
    }

    #[test]
    fn a_failover_needs_the_whole_bound_and_the_app_servers_word() {
        let t0 = Instant::now();
        let mut d = Detector::new(Duration::from_secs(1), Duration::from_secs(300));
        assert!(matches!(
            d.observe(&round(t0, 0, false)),
            Verdict::Suspect(_)
        ));
        assert!(matches!(
            d.observe(&round(t0, 900, false)),
            Verdict::Suspect(_)
        ));
        let Verdict::Promote(why) = d.observe(&round(t0, 1000, false)) else {
            panic!("no promotion after the bound");
        };
        assert!(
            why.iter().any(|w| w == "app1 cannot reach it either"),
            "{why:?}"
        );
    }

    #[test]
    fn a_pause_shorter_than_the_bound_starts_over() {
        let t0 = Instant::now();
        let mut d = Detector::new(Duration::from_secs(1), Duration::from_secs(300));
        d.observe(&round(t0, 0, false));
        d.observe(&round(t0, 800, false));
        assert_eq!(d.observe(&round(t0, 900, true)), Verdict::Healthy);
        assert!(matches!(
            d.observe(&round(t0, 1200, false)),
            Verdict::Suspect(_)
        ));
        assert!(matches!(
            d.observe(&round(t0, 2100, false)),
            Verdict::Suspect(_)
        ));
    }

    #[test]
    fn an_app_server_that_reaches_the_primary_vetoes() {
        let t0 = Instant::now();
        let mut d = Detector::new(Duration::ZERO, Duration::from_secs(300));
        let mut r = round(t0, 0, false);
        r.apps[1].1 = Some(true);
        let Verdict::Hold(why) = d.observe(&r) else {
            panic!()
        };
        assert!(why.starts_with("app2 still reaches the primary"), "{why}");
        r.apps = vec![("app1".into(), None)];
        assert!(matches!(d.observe(&r), Verdict::Hold(w) if w.contains("no app server answers")));
    }

    #[test]
    fn only_the_most_advanced_replica_promotes_and_not_twice_in_a_row() {
        let t0 = Instant::now();
        let mut d = Detector::new(Duration::ZERO, Duration::from_secs(300));
        let mut r = round(t0, 0, false);
        r.others = vec![("db3".into(), Some("0-1-101".into()))];
        assert!(matches!(d.observe(&r), Verdict::Hold(w) if w.starts_with("db3 is more advanced")));
        r.others = vec![("db1".into(), Some("0-1-100".into()))];
        assert!(matches!(d.observe(&r), Verdict::Hold(w) if w.contains("comes first")));
        r.others = vec![("db3".into(), Some("0-1-99".into()))];
        assert!(matches!(d.observe(&r), Verdict::Promote(_)));
        r.since_last_failover = Some(Duration::from_secs(60));
        assert!(matches!(d.observe(&r), Verdict::Hold(w) if w.contains("no second one")));
    }
}
