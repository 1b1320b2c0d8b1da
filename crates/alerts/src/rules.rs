//! Alert rules and the life of each alert, as Prometheus's rule manager runs them: an
//! expression that holds for a label set makes an alert pending; once it has held for
//! the rule's `for`, the alert fires; when the expression stops holding, a firing alert
//! resolves (and a pending one is dropped without a word).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::expr::{parse, Expr, Labels, ParseError, Source};

/// A rule as a design writes it (and as the defaults are written).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub expr: String,
    pub for_: Duration,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `{label}` is replaced by the alert's label value.
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    pub expr: Expr,
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Result<Rule, ParseError> {
        Ok(Rule {
            expr: parse(&spec.expr)?,
            spec,
        })
    }
}

fn spec(name: &str, expr: &str, for_secs: u64, severity: &str, summary: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        expr: expr.into(),
        for_: Duration::from_secs(for_secs),
        severity: severity.into(),
        summary: summary.into(),
    }
}

/// The rules every collector has unless its design changes or turns them off; the
/// conventions of samber/awesome-prometheus-alerts.
pub fn default_rules() -> Vec<RuleSpec> {
    vec![
        spec(
            "ServerDown",
            "webstack_agent_up == 0",
            0,
            "critical",
            "server {server} stopped reporting: its node is not running or not reachable",
        ),
        spec(
            "ComponentDown",
            r#"webstack_component_ready{state!="starting"} == 0"#,
            15,
            "critical",
            "the {component} of {server} is {state}",
        ),
        spec(
            "BackendDown",
            "webstack_lb_backend_up == 0",
            0,
            "warning",
            "load balancer {server} takes no traffic to backend {backend}",
        ),
        spec(
            "NoBackendAlive",
            "sum by (server) (webstack_lb_backend_up) == 0",
            0,
            "critical",
            "load balancer {server} has no backend up: the site is down behind it",
        ),
        spec(
            "HighErrorRate",
            r#"sum by (server, component) (rate(webstack_http_requests_total{status="5xx",route!="health"}[1m])) / sum by (server, component) (rate(webstack_http_requests_total{route!="health"}[1m])) > 0.05"#,
            60,
            "critical",
            "over 5% of the answers of the {component} of {server} are 5xx",
        ),
        spec(
            "ReplicationLagHigh",
            "webstack_db_replication_lag_seconds > 30",
            60,
            "warning",
            "replica {server} is more than 30 s behind its primary",
        ),
        spec(
            "ReplicaThreadStopped",
            "webstack_db_replica_thread_running == 0",
            0,
            "critical",
            "the {thread} thread of replica {server} stopped",
        ),
        spec(
            "SemiSyncOff",
            "webstack_db_semi_sync_on == 0",
            30,
            "warning",
            "primary {server} fell back to asynchronous replication: no replica acknowledges",
        ),
        // The local CA's certificates live 12 hours by design; what matters for them is
        // that renewal happens, which CertificateRenewalOverdue watches for every source.
        spec(
            "CertificateExpiring",
            r#"webstack_tls_certificate_expiry_seconds{source!="local CA"} < 20 * 86400"#,
            0,
            "warning",
            "the certificate of {server} on {listen} expires in under 20 days",
        ),
        spec(
            "CertificateExpiryCritical",
            r#"webstack_tls_certificate_expiry_seconds{source!="local CA"} < 3 * 86400"#,
            0,
            "critical",
            "the certificate of {server} on {listen} expires in under 3 days",
        ),
        spec(
            "CertificateRenewalOverdue",
            "webstack_tls_certificate_renewal_due_seconds < -300",
            0,
            "critical",
            "the certificate of {server} on {listen} should have been renewed over 5 minutes ago",
        ),
        spec(
            "StateDiskNearlyFull",
            "webstack_state_filesystem_free_ratio < 0.1",
            300,
            "warning",
            "the disk holding the state of {server} is over 90% full",
        ),
        spec(
            "AgentDroppingData",
            "increase(webstack_agent_dropped_records_total[5m]) > 0",
            0,
            "warning",
            "the agent of {server} dropped records its buffer could not hold",
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Pending,
    Firing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: String,
    pub severity: String,
    pub labels: Labels,
    pub state: AlertState,
    /// Seconds (Unix) when the condition started holding.
    pub active_since: f64,
    pub fired_at: Option<f64>,
    pub value: f64,
    pub summary: String,
}

/// A change worth telling someone about: an alert fired or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: Alert,
    /// `firing` or `resolved`.
    pub to: &'static str,
    pub at: f64,
}

pub struct Engine {
    rules: Vec<Rule>,
    active: BTreeMap<(usize, Labels), Alert>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        Engine {
            rules,
            active: BTreeMap::new(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluates every rule at `now` (seconds) and returns what fired and what resolved.
    pub fn step(&mut self, now: f64, src: &dyn Source) -> Vec<Transition> {
        let results: Vec<_> = self.rules.iter().map(|r| r.expr.eval(src)).collect();
        self.apply(now, results)
    }

    /// The state machine itself, given each rule's result (for tests without a source).
    pub fn apply(&mut self, now: f64, results: Vec<crate::Vector>) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut holding = std::collections::BTreeSet::new();
        for (i, result) in results.into_iter().enumerate() {
            let rule = &self.rules[i].spec;
            for (labels, value) in result {
                let key = (i, labels.clone());
                holding.insert(key.clone());
                let alert = self.active.entry(key).or_insert_with(|| Alert {
                    rule: rule.name.clone(),
                    severity: rule.severity.clone(),
                    summary: render(&rule.summary, &labels),
                    labels,
                    state: AlertState::Pending,
                    active_since: now,
                    fired_at: None,
                    value,
                });
                alert.value = value;
                if alert.state == AlertState::Pending
                    && now - alert.active_since >= rule.for_.as_secs_f64()
                {
                    alert.state = AlertState::Firing;
                    alert.fired_at = Some(now);
                    out.push(Transition {
                        alert: alert.clone(),
                        to: "firing",
                        at: now,
                    });
                }
            }
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !holding.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let alert = self.active.remove(&key).expect("listed above");
            if alert.state == AlertState::Firing {
                out.push(Transition {
                    alert,
                    to: "resolved",
                    at: now,
                });
            }
        }
        out
    }

    /// Pending and firing alerts, firing first, then by rule and labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().cloned().collect();
        v.sort_by(|a, b| (b.state, &a.rule, &a.labels).cmp(&(a.state, &b.rule, &b.labels)));
        v
    }
}

/// `{label}` replaced by the label's value.
fn render(template: &str, labels: &Labels) -> String {
    let mut out = template.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(server: &str) -> Labels {
        [("server".to_string(), server.to_string())].into()
    }

    fn engine(for_secs: u64) -> Engine {
        Engine::new(vec![Rule::new(spec(
            "ServerDown",
            "up == 0",
            for_secs,
            "critical",
            "{server} down",
        ))
        .unwrap()])
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut e = engine(10);
        assert!(e.apply(0.0, vec![vec![(l("web1"), 0.0)]]).is_empty());
        assert_eq!(e.alerts()[0].state, AlertState::Pending);
        assert!(e.apply(9.9, vec![vec![(l("web1"), 0.0)]]).is_empty());
        let t = e.apply(10.0, vec![vec![(l("web1"), 0.0)]]);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].to, t[0].alert.summary.as_str()),
            ("firing", "web1 down")
        );
        // Still holding: no second notification.
        assert!(e.apply(11.0, vec![vec![(l("web1"), 0.0)]]).is_empty());
        let t = e.apply(12.0, vec![vec![]]);
        assert_eq!(t[0].to, "resolved");
        assert!(e.alerts().is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_says_nothing_and_starts_over() {
        let mut e = engine(10);
        e.apply(0.0, vec![vec![(l("a"), 0.0)]]);
        assert!(e.apply(5.0, vec![vec![]]).is_empty());
        e.apply(6.0, vec![vec![(l("a"), 0.0)]]);
        // The 10 s count from 6, not from 0.
        assert!(e.apply(15.0, vec![vec![(l("a"), 0.0)]]).is_empty());
        assert_eq!(e.apply(16.0, vec![vec![(l("a"), 0.0)]]).len(), 1);
    }

    #[test]
    fn zero_for_fires_at_once_and_label_sets_are_separate_alerts() {
        let mut e = engine(0);
        let t = e.apply(0.0, vec![vec![(l("a"), 0.0), (l("b"), 0.0)]]);
        assert_eq!(t.len(), 2);
        let t = e.apply(1.0, vec![vec![(l("b"), 0.0)]]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].alert.labels, l("a"));
        assert_eq!(t[0].to, "resolved");
    }

    #[test]
    fn every_default_rule_parses() {
        for spec in default_rules() {
            Rule::new(spec.clone()).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        }
    }
}
