//! The monitoring service (`[servers.NAME.collector]`): it takes the agents' batches
//! (dropping records it already holds), keeps metrics, logs and error traces within its
//! bounds (`store`), evaluates the alert rules every second and runs the design's notify
//! command on each alert that fires or resolves, and serves:
//!
//! - `POST /ingest`: the agents' batches;
//! - `GET /metrics`: everything it holds, as OpenMetrics, for a Prometheus;
//! - `GET /api/alerts`, `/api/agents`, `/api/logs?server=&level=&grep=&request_id=&limit=`,
//!   `/api/trace/ID` (a request id or trace id), `/api/traces`, `/api/metrics?name=`;
//! - `GET /`: the dashboard (`dashboard`), live through `/dashboard/live`.
//!
//! Architecture invariant: knows records, rules and a whiteboard the node hands it;
//! nothing of designs.

mod dashboard;
mod exposition;
mod store;

pub use dashboard::{BoardServer, Tier, Whiteboard};
pub use store::{AgentState, Bounds, LogFilter, Store, TraceSummary};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use webstack_alerts::{Alert, AlertState, Engine, Rule, RuleSpec, Transition};
use webstack_monitoring::wire::{Batch, LogRecord};
use webstack_monitoring::{now, CONTENT_TYPE};
use webstack_net::http::{full, serve, text, Body, HttpLimits};
use webstack_net::Listener;

/// How often the rules are evaluated.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(1);
/// A batch is at most this big (an agent sends 1000 records at a time).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

pub struct CollectorConfig {
    pub server_name: String,
    pub bounds: Bounds,
    pub rules: Vec<RuleSpec>,
    pub notify: Option<Vec<String>>,
    pub whiteboard: Whiteboard,
}

struct State {
    store: Store,
    engine: Engine,
}

struct Collector {
    name: String,
    state: Mutex<State>,
    whiteboard: Whiteboard,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the collector on `listener` until `shutdown`.
pub async fn run(
    config: CollectorConfig,
    listener: Listener,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let rules = config
        .rules
        .into_iter()
        .map(|spec| {
            let name = spec.name.clone();
            Rule::new(spec).map_err(|e| format!("alert {name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let collector = Arc::new(Collector {
        name: config.server_name,
        state: Mutex::new(State {
            store: Store::new(config.bounds),
            engine: Engine::new(rules),
        }),
        whiteboard: config.whiteboard,
    });
    let evaluator = {
        let (c, shutdown) = (collector.clone(), shutdown.clone());
        let notify = config.notify;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVALUATION_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let t = now();
                let transitions = {
                    let mut s = c.lock();
                    s.store.prune(t);
                    let State { store, engine } = &mut *s;
                    engine.step(t, &store.at(t))
                };
                for tr in transitions {
                    announce(&c, &tr, notify.as_deref());
                }
            }
        })
    };
    serve(
        listener,
        HttpLimits::default(),
        shutdown,
        move |req, _peer| {
            let c = collector.clone();
            async move { handle(&c, req).await }
        },
    )
    .await;
    let _ = evaluator.await;
    Ok(())
}

/// Logs an alert that fired or resolved, keeps it as a log record, and runs notify with
/// the alert in its environment (as Alertmanager's webhook or keepalived's notify).
fn announce(c: &Collector, tr: &Transition, notify: Option<&[String]>) {
    let a = &tr.alert;
    let labels = labels_text(&a.labels);
    let line = format!(
        "alert {} {} [{}] {} ({labels})",
        a.rule, tr.to, a.severity, a.summary
    );
    eprintln!("collector: {line}");
    c.lock().store.ingest_log(LogRecord {
        at: tr.at,
        server: c.name.clone(),
        component: "alerts".into(),
        level: if tr.to == "firing" && a.severity == "critical" {
            "error"
        } else {
            "warning"
        }
        .into(),
        message: line,
        request_id: None,
    });
    let Some([program, args @ ..]) = notify else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("WEBSTACK_ALERT", &a.rule)
        .env("WEBSTACK_ALERT_STATE", tr.to)
        .env("WEBSTACK_ALERT_SEVERITY", &a.severity)
        .env("WEBSTACK_ALERT_SUMMARY", &a.summary)
        .env("WEBSTACK_ALERT_LABELS", &labels)
        .env("WEBSTACK_ALERT_VALUE", a.value.to_string());
    webstack_net::process::spawn_hook(
        cmd,
        "collector",
        format!("notify {program:?} for {} {}", a.rule, tr.to),
    );
}

fn labels_text(labels: &webstack_alerts::Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Serialize)]
pub struct AlertView {
    pub name: String,
    pub state: &'static str,
    pub severity: String,
    pub summary: String,
    pub labels: webstack_alerts::Labels,
    pub active_since: f64,
    pub fired_at: Option<f64>,
    pub value: f64,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        AlertView {
            name: a.rule.clone(),
            state: match a.state {
                AlertState::Firing => "firing",
                AlertState::Pending => "pending",
            },
            severity: a.severity.clone(),
            summary: a.summary.clone(),
            labels: a.labels.clone(),
            active_since: a.active_since,
            fired_at: a.fired_at,
            value: a.value,
        }
    }
}

fn json(value: &impl Serialize) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(value).expect("plain data")))
        .expect("static headers are valid")
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (!k.is_empty()).then(|| (decode(k), decode(v)))
        })
        .collect()
}

async fn handle(c: &Collector, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/ingest") => {
            let body = match Limited::new(req.into_body(), MAX_BATCH_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("400 Bad Request: the batch could not be read ({e})"),
                    )
                }
            };
            ingest(c, &body)
        }
        (&Method::GET, "/metrics") => {
            let t = now();
            let body = {
                let s = c.lock();
                s.store.exposition(t, &s.engine.alerts())
            };
            Response::builder()
                .header("content-type", CONTENT_TYPE)
                .body(full(body))
                .expect("static headers are valid")
        }
        (&Method::GET, "/api/alerts") => {
            let alerts: Vec<AlertView> = c.lock().engine.alerts().iter().map(Into::into).collect();
            json(&alerts)
        }
        (&Method::GET, "/api/agents") => {
            let t = now();
            #[derive(Serialize)]
            struct AgentView<'a> {
                up: bool,
                #[serde(flatten)]
                state: &'a AgentState,
            }
            let s = c.lock();
            let agents: Vec<AgentView> = s
                .store
                .agents()
                .map(|a| AgentView { up: a.up(t), state: a })
                .collect();
            json(&agents)
        }
        (&Method::GET, "/api/logs") => {
            let q = query(&req);
            let filter = LogFilter {
                server: q.get("server").cloned(),
                level: q.get("level").cloned(),
                text: q.get("grep").cloned(),
                request_id: q.get("request_id").cloned(),
                limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(200),
            };
            let s = c.lock();
            json(&s.store.logs(&filter))
        }
        (&Method::GET, "/api/traces") => {
            let n = query(&req)
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(20);
            json(&c.lock().store.recent_traces(n))
        }
        (&Method::GET, p) if p.starts_with("/api/trace/") => {
            let id = &p["/api/trace/".len()..];
            let spans = c.lock().store.trace(id);
            if spans.is_empty() {
                return text(StatusCode::NOT_FOUND, format!("404 Not Found: the collector holds no error trace of {id:?} (only requests that failed are traced, and only the newest are kept)"));
            }
            json(&spans)
        }
        (&Method::GET, "/api/metrics") => {
            let q = query(&req);
            let Some(name) = q.get("name") else {
                return text(StatusCode::BAD_REQUEST, "400 Bad Request: say which metric: /api/metrics?name=webstack_http_requests_total");
            };
            let labels: Vec<(&str, &str)> = q
                .iter()
                .filter(|(k, _)| k.as_str() != "name")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let v = c.lock().store.latest(name, &labels, now());
            json(&v)
        }
        (&Method::GET, "/") => {
            let t = now();
            let s = c.lock();
            dashboard::page(&c.whiteboard, &s.store, &s.engine.alerts(), t)
        }
        (&Method::GET, "/dashboard/live") => {
            let t = now();
            let s = c.lock();
            dashboard::live(&c.whiteboard, &s.store, &s.engine.alerts(), t)
        }
        (_, "/ingest" | "/metrics" | "/" | "/dashboard/live") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: /ingest takes POST, the other pages GET",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "404 Not Found: the collector serves /, /metrics, /ingest and /api/{alerts,agents,logs,traces,trace/ID,metrics}",
        ),
    }
}

fn ingest(c: &Collector, body: &Bytes) -> Response<Body> {
    let batch: Batch = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("400 Bad Request: not a batch of records ({e})"),
            )
        }
    };
    let ack = c.lock().store.ingest(batch, now());
    json(&ack)
}
