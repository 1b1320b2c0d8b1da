//! What the collector holds, within its bounds: per agent its delivery state, the latest
//! scrape of each metric family, a window of samples per series, and the newest logs and
//! error-trace spans. Time is passed in (seconds since the Unix epoch), so it is tested
//! without a clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use webstack_alerts::{Alert, Labels, Selector, Source, Vector};
use webstack_monitoring::wire::{Ack, Batch, LogRecord, Record, SpanRecord};

use crate::exposition::{escape, families, sample, FamilyBlock};

#[derive(Debug, Clone)]
pub struct Bounds {
    pub window: Duration,
    pub max_logs: usize,
    pub max_traces: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentState {
    pub server: String,
    pub run: u64,
    /// The highest record number of `run` held.
    pub through: u64,
    pub last_seen: f64,
    pub interval_ms: u64,
    /// The agent's own count of records its full buffer refused.
    pub dropped: u64,
    pub lost_at_restart: u64,
    pub received: u64,
    pub duplicates: u64,
    /// `at` of the newest metrics reading: series not in it are gone.
    pub metrics_at: f64,
}

impl AgentState {
    /// Silent for three intervals (at least 1 s): counted down.
    pub fn up(&self, now: f64) -> bool {
        now - self.last_seen <= (3.0 * self.interval_ms as f64 / 1000.0).max(1.0)
    }
}

struct Series {
    server: String,
    points: VecDeque<(f64, f64)>,
}

pub struct Store {
    bounds: Bounds,
    agents: BTreeMap<String, AgentState>,
    /// (family, server) → that server's latest block of the family.
    blocks: BTreeMap<(String, String), FamilyBlock>,
    series: HashMap<(String, Labels), Series>,
    logs: VecDeque<LogRecord>,
    spans: VecDeque<SpanRecord>,
}

#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub server: Option<String>,
    pub level: Option<String>,
    pub text: Option<String>,
    pub request_id: Option<String>,
    pub limit: usize,
}

/// One failed request, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub request_id: String,
    pub trace_id: String,
    pub at: f64,
    pub status: u16,
    /// `server/component` of each hop, outermost first.
    pub hops: Vec<String>,
    pub error: Option<String>,
}

impl Store {
    pub fn new(bounds: Bounds) -> Store {
        Store {
            bounds,
            agents: BTreeMap::new(),
            blocks: BTreeMap::new(),
            series: HashMap::new(),
            logs: VecDeque::new(),
            spans: VecDeque::new(),
        }
    }

    /// Takes a batch: records numbered at or below what is held for the agent's run are
    /// duplicates (a batch sent again) and dropped.
    pub fn ingest(&mut self, batch: Batch, now: f64) -> Ack {
        let agent = self
            .agents
            .entry(batch.server.clone())
            .or_insert_with(|| AgentState {
                server: batch.server.clone(),
                run: batch.run,
                through: 0,
                last_seen: now,
                interval_ms: batch.interval_ms,
                dropped: 0,
                lost_at_restart: 0,
                received: 0,
                duplicates: 0,
                metrics_at: 0.0,
            });
        if agent.run != batch.run {
            agent.run = batch.run;
            agent.through = 0;
        }
        agent.last_seen = now;
        agent.interval_ms = batch.interval_ms;
        agent.dropped = batch.dropped;
        agent.lost_at_restart = batch.lost_at_restart;
        let mut duplicates = 0;
        let mut fresh = Vec::new();
        for (i, r) in batch.records.into_iter().enumerate() {
            let seq = batch.first_seq + i as u64;
            if seq <= agent.through {
                duplicates += 1;
            } else {
                agent.through = seq;
                fresh.push(r);
            }
        }
        agent.duplicates += duplicates;
        agent.received += fresh.len() as u64;
        let ack = Ack {
            through: agent.through,
            duplicates,
        };
        let server = batch.server;
        for r in fresh {
            match r {
                Record::Metrics { at, text } => self.metrics(&server, at, &text),
                Record::Log(l) => self.ingest_log(l),
                Record::Span(s) => {
                    self.spans.push_back(s);
                    if self.spans.len() > self.bounds.max_traces {
                        self.spans.pop_front();
                    }
                }
            }
        }
        ack
    }

    fn metrics(&mut self, server: &str, at: f64, text: &str) {
        if let Some(a) = self.agents.get_mut(server) {
            a.metrics_at = at;
        }
        let horizon = at - self.bounds.window.as_secs_f64();
        self.blocks.retain(|(_, s), _| s != server);
        for block in families(text) {
            for line in &block.samples {
                let Some(s) = sample(line) else { continue };
                // Buckets are exposed again but not kept over time: no rule reads them.
                if s.name.ends_with("_bucket") {
                    continue;
                }
                let series = self
                    .series
                    .entry((s.name, s.labels))
                    .or_insert_with(|| Series {
                        server: server.to_string(),
                        points: VecDeque::new(),
                    });
                series.points.push_back((at, s.value));
                while series.points.front().is_some_and(|p| p.0 < horizon) {
                    series.points.pop_front();
                }
            }
            self.blocks
                .insert((block.name.clone(), server.to_string()), block);
        }
    }

    /// A record the collector makes itself (an alert that fired or resolved).
    pub fn ingest_log(&mut self, l: LogRecord) {
        self.logs.push_back(l);
        if self.logs.len() > self.bounds.max_logs {
            self.logs.pop_front();
        }
    }

    /// Drops series with no sample inside the window (a server gone for good).
    pub fn prune(&mut self, now: f64) {
        let horizon = now - self.bounds.window.as_secs_f64();
        self.series
            .retain(|_, s| s.points.back().is_some_and(|p| p.0 >= horizon));
    }

    pub fn agents(&self) -> impl Iterator<Item = &AgentState> {
        self.agents.values()
    }

    fn fresh(&self, s: &Series, now: f64) -> bool {
        self.agents
            .get(&s.server)
            .is_some_and(|a| a.up(now) && s.points.back().is_some_and(|p| p.0 >= a.metrics_at))
    }

    /// The newest value of each fresh series named `name` matching `labels`.
    pub fn latest(&self, name: &str, labels: &[(&str, &str)], now: f64) -> Vector {
        let sel = Selector {
            metric: name.to_string(),
            matchers: labels
                .iter()
                .map(|(k, v)| webstack_alerts::Matcher::Eq(k.to_string(), v.to_string()))
                .collect(),
        };
        self.at(now).instant(&sel)
    }

    /// The store as the alert rules read it at `now`.
    pub fn at(&self, now: f64) -> View<'_> {
        View { store: self, now }
    }

    pub fn logs(&self, f: &LogFilter) -> Vec<&LogRecord> {
        let text = f.text.as_ref().map(|t| t.to_lowercase());
        let mut out: Vec<&LogRecord> = self
            .logs
            .iter()
            .rev()
            .filter(|l| f.server.as_ref().is_none_or(|s| &l.server == s))
            .filter(|l| f.level.as_ref().is_none_or(|v| level_at_least(&l.level, v)))
            .filter(|l| {
                f.request_id
                    .as_ref()
                    .is_none_or(|r| l.request_id.as_ref() == Some(r))
            })
            .filter(|l| {
                text.as_ref()
                    .is_none_or(|t| l.message.to_lowercase().contains(t))
            })
            .take(f.limit.max(1))
            .collect();
        out.reverse();
        out
    }

    /// The spans of one request (by request id or trace id), outermost hop first.
    pub fn trace(&self, id: &str) -> Vec<SpanRecord> {
        let mut spans: Vec<SpanRecord> = self
            .spans
            .iter()
            .filter(|s| s.request_id == id || s.trace_id == id)
            .cloned()
            .collect();
        // Parents before children; a hop whose parent is not held goes by its start time.
        spans.sort_by(|a, b| a.at.total_cmp(&b.at));
        let mut ordered: Vec<SpanRecord> = Vec::new();
        while !spans.is_empty() {
            let i = spans
                .iter()
                .position(|s| {
                    s.parent_id.as_ref().is_none_or(|p| {
                        ordered.iter().any(|o| &o.span_id == p)
                            || !spans.iter().any(|o| &o.span_id == p)
                    })
                })
                .unwrap_or(0);
            ordered.push(spans.remove(i));
        }
        ordered
    }

    /// The newest failed requests, newest first.
    pub fn recent_traces(&self, n: usize) -> Vec<TraceSummary> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for s in self.spans.iter().rev() {
            if seen.contains(&s.request_id) {
                continue;
            }
            seen.push(s.request_id.clone());
            let spans = self.trace(&s.request_id);
            let first = &spans[0];
            out.push(TraceSummary {
                request_id: s.request_id.clone(),
                trace_id: first.trace_id.clone(),
                at: first.at,
                status: first.status,
                hops: spans
                    .iter()
                    .map(|s| format!("{}/{}", s.server, s.component))
                    .collect(),
                error: spans.iter().rev().find_map(|s| s.error.clone()),
            });
            if out.len() == n {
                break;
            }
        }
        out
    }

    /// Everything held, as OpenMetrics text: the agents' latest families (of agents that
    /// are up), then the collector's own.
    pub fn exposition(&self, now: f64, alerts: &[Alert]) -> String {
        let mut out = String::new();
        let mut current = "";
        for ((family, server), block) in &self.blocks {
            if !self.agents.get(server).is_some_and(|a| a.up(now)) {
                continue;
            }
            if family != current {
                for m in &block.meta {
                    out.push_str(m);
                    out.push('\n');
                }
                current = family;
            }
            for s in &block.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
        let _ = writeln!(out, "# HELP webstack_agent_up 1 while the server's agent reports (silent for three intervals: 0)\n# TYPE webstack_agent_up gauge");
        for a in self.agents.values() {
            let _ = writeln!(
                out,
                "webstack_agent_up{{server=\"{}\"}} {}",
                escape(&a.server),
                u8::from(a.up(now))
            );
        }
        let _ = writeln!(out, "# HELP webstack_collector_records Records taken from each agent (duplicates not counted)\n# TYPE webstack_collector_records counter");
        for a in self.agents.values() {
            let _ = writeln!(
                out,
                "webstack_collector_records_total{{server=\"{}\"}} {}",
                escape(&a.server),
                a.received
            );
        }
        let _ = writeln!(out, "# HELP webstack_collector_duplicate_records Records sent again and dropped\n# TYPE webstack_collector_duplicate_records counter");
        for a in self.agents.values() {
            let _ = writeln!(
                out,
                "webstack_collector_duplicate_records_total{{server=\"{}\"}} {}",
                escape(&a.server),
                a.duplicates
            );
        }
        let _ = writeln!(out, "# HELP webstack_alerts Pending and firing alerts (Prometheus's ALERTS)\n# TYPE webstack_alerts gauge");
        for a in alerts {
            let mut labels = format!(
                "alertname=\"{}\",severity=\"{}\",alertstate=\"{}\"",
                escape(&a.rule),
                escape(&a.severity),
                if a.state == webstack_alerts::AlertState::Firing {
                    "firing"
                } else {
                    "pending"
                }
            );
            for (k, v) in &a.labels {
                let _ = write!(labels, ",{k}=\"{}\"", escape(v));
            }
            let _ = writeln!(out, "webstack_alerts{{{labels}}} 1");
        }
        out.push_str("# EOF\n");
        out
    }
}

fn level_at_least(level: &str, wanted: &str) -> bool {
    let rank = |l: &str| match l {
        "error" => 2,
        "warning" => 1,
        _ => 0,
    };
    rank(level) >= rank(wanted)
}

pub struct View<'a> {
    store: &'a Store,
    now: f64,
}

impl Source for View<'_> {
    fn instant(&self, sel: &Selector) -> Vector {
        if sel.metric == "webstack_agent_up" {
            return self
                .store
                .agents
                .values()
                .map(|a| {
                    let labels: Labels = [("server".to_string(), a.server.clone())].into();
                    (labels, if a.up(self.now) { 1.0 } else { 0.0 })
                })
                .filter(|(l, _)| sel.matches(l))
                .collect();
        }
        self.store
            .series
            .iter()
            .filter(|((name, labels), s)| {
                *name == sel.metric && sel.matches(labels) && self.store.fresh(s, self.now)
            })
            .filter_map(|((_, labels), s)| Some((labels.clone(), s.points.back()?.1)))
            .collect()
    }

    fn range(&self, sel: &Selector, window: Duration) -> Vec<(Labels, webstack_alerts::Points)> {
        let from = self.now - window.as_secs_f64();
        self.store
            .series
            .iter()
            .filter(|((name, labels), s)| {
                *name == sel.metric && sel.matches(labels) && self.store.fresh(s, self.now)
            })
            .map(|((_, labels), s)| {
                (
                    labels.clone(),
                    s.points.iter().filter(|p| p.0 >= from).cloned().collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webstack_monitoring::wire::Record;

    fn store() -> Store {
        Store::new(Bounds {
            window: Duration::from_secs(60),
            max_logs: 3,
            max_traces: 10,
        })
    }

    fn batch(run: u64, first_seq: u64, records: Vec<Record>) -> Batch {
        Batch {
            server: "web1".into(),
            run,
            first_seq,
            interval_ms: 1000,
            records,
            dropped: 0,
            lost_at_restart: 0,
        }
    }

    fn log(n: u32) -> Record {
        Record::Log(LogRecord {
            at: n as f64,
            server: "web1".into(),
            component: "web".into(),
            level: if n.is_multiple_of(2) { "error" } else { "info" }.into(),
            message: format!("GET /{n} 200"),
            request_id: Some(format!("r{n}")),
        })
    }

    #[test]
    fn a_batch_sent_again_is_taken_once() {
        let mut s = store();
        let ack = s.ingest(batch(7, 1, vec![log(1), log(2)]), 0.0);
        assert_eq!((ack.through, ack.duplicates), (2, 0));
        // The answer was lost: the agent sends 1..=2 again, with 3.
        let ack = s.ingest(batch(7, 1, vec![log(1), log(2), log(3)]), 0.0);
        assert_eq!((ack.through, ack.duplicates), (3, 2));
        assert_eq!(
            s.logs(&LogFilter {
                limit: 10,
                ..Default::default()
            })
            .len(),
            3
        );
        // A new run numbers from 1 again.
        let ack = s.ingest(batch(8, 1, vec![log(4)]), 0.0);
        assert_eq!((ack.through, ack.duplicates), (1, 0));
        // The log window keeps the newest 3.
        let all = s.logs(&LogFilter {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(
            all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["GET /2 200", "GET /3 200", "GET /4 200"]
        );
        let errors = s.logs(&LogFilter {
            level: Some("error".into()),
            text: Some("/4".into()),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn series_are_fresh_only_while_the_agent_reports_them() {
        let mut s = store();
        let text =
            |v: u32| format!("# TYPE webstack_x gauge\nwebstack_x{{server=\"web1\"}} {v}\n# EOF\n");
        s.ingest(
            batch(
                1,
                1,
                vec![Record::Metrics {
                    at: 10.0,
                    text: text(1),
                }],
            ),
            10.0,
        );
        s.ingest(
            batch(
                1,
                2,
                vec![Record::Metrics {
                    at: 11.0,
                    text: text(2),
                }],
            ),
            11.0,
        );
        assert_eq!(s.latest("webstack_x", &[], 11.5)[0].1, 2.0);
        let view = s.at(11.5);
        let r = view.range(
            &Selector {
                metric: "webstack_x".into(),
                matchers: vec![],
            },
            Duration::from_secs(60),
        );
        assert_eq!(r[0].1.len(), 2);
        // Three intervals of silence: the agent is down, its series are not read.
        assert!(s.latest("webstack_x", &[], 14.5).is_empty());
        let up = s.at(14.5).instant(&Selector {
            metric: "webstack_agent_up".into(),
            matchers: vec![],
        });
        assert_eq!(up[0].1, 0.0);
        assert!(s
            .exposition(14.5, &[])
            .contains("webstack_agent_up{server=\"web1\"} 0"));
        assert!(!s.exposition(14.5, &[]).contains("webstack_x{"));
        assert!(s
            .exposition(11.5, &[])
            .contains("webstack_x{server=\"web1\"} 2\n"));
    }

    #[test]
    fn a_trace_is_put_in_hop_order() {
        let mut s = store();
        let span = |server: &str, id: &str, parent: Option<&str>, at: f64, error: Option<&str>| {
            Record::Span(SpanRecord {
                at,
                duration_ms: 1.0,
                trace_id: "t".into(),
                span_id: id.into(),
                parent_id: parent.map(Into::into),
                request_id: "r".into(),
                server: server.into(),
                component: "web".into(),
                method: "GET".into(),
                target: "/".into(),
                status: 502,
                error: error.map(Into::into),
            })
        };
        // Delivered out of order, by different agents in life; here in one batch.
        s.ingest(
            batch(
                1,
                1,
                vec![
                    span("web1", "b", Some("a"), 1.0, Some("cannot connect")),
                    span("lb1", "a", None, 1.0, None),
                ],
            ),
            0.0,
        );
        let t = s.trace("r");
        assert_eq!(
            t.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(),
            ["lb1", "web1"]
        );
        let recent = s.recent_traces(5);
        assert_eq!(recent[0].hops, ["lb1/web", "web1/web"]);
        assert_eq!(recent[0].error.as_deref(), Some("cannot connect"));
    }
}
