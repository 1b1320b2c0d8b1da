//! What an agent sends its collector: batches of numbered records. A record's number is
//! `first_seq` plus its place in the batch; numbers of one run of an agent go up by one,
//! so the collector keeps the highest it has and drops anything at or below it (a batch
//! sent again after a lost answer). A new run of the agent starts a new `run`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub server: String,
    /// Unique per start of the agent.
    pub run: u64,
    pub first_seq: u64,
    /// How often the agent sends its metrics: the collector counts it down after three
    /// intervals of silence.
    pub interval_ms: u64,
    pub records: Vec<Record>,
    /// Records this run dropped because its buffer was full.
    pub dropped: u64,
    /// Records the previous run had taken but not had acknowledged when it ended.
    pub lost_at_restart: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// Every record of the run up to this number (inclusive) is held.
    pub through: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// One scrape of the agent, as OpenMetrics text.
    Metrics {
        at: f64,
        text: String,
    },
    Log(LogRecord),
    Span(SpanRecord),
}

impl Record {
    /// `metrics`, `access` (a log record of a request), `log` or `span`.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Metrics { .. } => "metrics",
            Record::Log(l) if l.request_id.is_some() => "access",
            Record::Log(_) => "log",
            Record::Span(_) => "span",
        }
    }
}

pub const KINDS: [&str; 4] = ["metrics", "access", "log", "span"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub server: String,
    /// `web`, `load_balancer`, `app`, `node`, …
    pub component: String,
    /// `info`, `warning`, `error`.
    pub level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One hop of a request that failed (5xx): where, when, how long, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpanRecord {
    /// When the hop received the request (seconds since the Unix epoch).
    pub at: f64,
    pub duration_ms: f64,
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub request_id: String,
    pub server: String,
    pub component: String,
    pub method: String,
    pub target: String,
    pub status: u16,
    /// The hop's own error, when it answered 5xx itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
