//! The stats listener, like HAProxy's stats page and runtime API: a page for people,
//! Prometheus `/metrics`, `/backends.json`, and `POST /backends/NAME/state` (body `ready`,
//! `drain` or `maint`) to change a backend's admin state without a restart.

use std::fmt::Write;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use webstack_net::http::{full, text, Body};

use crate::pool::{AdminState, BackendPool, BackendSnapshot, LATENCY_BUCKETS};

pub async fn handle(
    pool: Arc<BackendPool>,
    server_name: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => html(page(server_name, &pool.snapshot())),
        (Method::GET, "/metrics") => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(full(metrics(&pool)))
            .unwrap(),
        (Method::GET, "/backends.json") => Response::builder()
            .header("content-type", "application/json")
            .body(full(
                serde_json::to_vec_pretty(&pool.snapshot()).expect("snapshots serialise"),
            ))
            .unwrap(),
        (Method::POST, p) if p.starts_with("/backends/") && p.ends_with("/state") => {
            let name = p
                .trim_start_matches("/backends/")
                .trim_end_matches("/state")
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let wanted = String::from_utf8_lossy(&body).to_string();
            let Some(state) = AdminState::parse(&wanted) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("{wanted:?} is not a state; send ready, drain or maint"),
                );
            };
            match pool.set_admin(&name, state) {
                Some(()) => text(StatusCode::OK, format!("backend {name} is now {state:?}")),
                None => {
                    let names: Vec<&str> = pool
                        .backends
                        .iter()
                        .map(|b| b.config.name.as_str())
                        .collect();
                    text(
                        StatusCode::NOT_FOUND,
                        format!("no backend {name:?} (backends: {})", names.join(", ")),
                    )
                }
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "stats pages: /, /metrics, /backends.json, POST /backends/NAME/state",
        ),
    }
}

fn html(body: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(full(body))
        .unwrap()
}

fn state_word(b: &BackendSnapshot) -> &'static str {
    match (b.admin, b.up) {
        (AdminState::Maint, _) => "MAINT",
        (AdminState::Drain, true) => "DRAIN",
        (AdminState::Drain, false) => "DRAIN (DOWN)",
        (AdminState::Ready, true) => "UP",
        (AdminState::Ready, false) => "DOWN",
    }
}

fn page(server_name: &str, backends: &[BackendSnapshot]) -> String {
    let mut rows = String::new();
    for b in backends {
        let colour = match state_word(b) {
            "UP" => "#cfe8cf",
            "DOWN" | "DRAIN (DOWN)" => "#f3c6c6",
            _ => "#f3e3b5",
        };
        let _ = write!(
            rows,
            "<tr style=\"background:{colour}\"><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{:.0}s</td><td>{}</td></tr>",
            b.name, b.address, state_word(b), b.weight, if b.backup { " (backup)" } else { "" }, b.active, b.requests,
            b.responses[1], b.responses[2], b.responses[3], b.responses[4],
            b.connect_errors + b.response_errors + b.timeouts, b.retries, b.went_up, b.went_down, b.seconds_in_state,
            escape(&b.last_check)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>{server_name} stats</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:1.5rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.25rem .5rem;font-size:.9rem}}</style></head>\
         <body><h1>Load balancer {server_name}</h1><table><tr><th>backend</th><th>address</th><th>state</th><th>weight</th><th>active</th><th>requests</th>\
         <th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>errors</th><th>retries</th><th>up / down</th><th>in state</th><th>last check</th></tr>{rows}</table>\
         <p>Also: <a href=\"/metrics\">/metrics</a> (Prometheus), <a href=\"/backends.json\">/backends.json</a>.</p></body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Prometheus text exposition format.
pub fn metrics(pool: &BackendPool) -> String {
    let snaps = pool.snapshot();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, values: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        values(&mut out);
    };
    family(
        "webstack_lb_backend_up",
        "gauge",
        "1 if the backend is up and ready, else 0.",
        &mut |o| {
            for b in &snaps {
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_up{{backend=\"{}\"}} {}",
                    b.name,
                    u8::from(b.up && b.admin == AdminState::Ready)
                );
            }
        },
    );
    family(
        "webstack_lb_backend_active",
        "gauge",
        "Requests or connections in flight.",
        &mut |o| {
            for b in &snaps {
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_active{{backend=\"{}\"}} {}",
                    b.name, b.active
                );
            }
        },
    );
    family(
        "webstack_lb_backend_requests_total",
        "counter",
        "Requests or connections sent to the backend.",
        &mut |o| {
            for b in &snaps {
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_requests_total{{backend=\"{}\"}} {}",
                    b.name, b.requests
                );
            }
        },
    );
    family(
        "webstack_lb_backend_responses_total",
        "counter",
        "Responses by status class.",
        &mut |o| {
            for b in &snaps {
                for (i, n) in b.responses.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "webstack_lb_backend_responses_total{{backend=\"{}\",code=\"{}xx\"}} {n}",
                        b.name,
                        i + 1
                    );
                }
            }
        },
    );
    family(
        "webstack_lb_backend_errors_total",
        "counter",
        "Failed attempts by kind.",
        &mut |o| {
            for b in &snaps {
                for (kind, n) in [
                    ("connect", b.connect_errors),
                    ("response", b.response_errors),
                    ("timeout", b.timeouts),
                ] {
                    let _ = writeln!(
                        o,
                        "webstack_lb_backend_errors_total{{backend=\"{}\",kind=\"{kind}\"}} {n}",
                        b.name
                    );
                }
            }
        },
    );
    family(
        "webstack_lb_backend_retries_total",
        "counter",
        "Requests sent to another backend after this one failed.",
        &mut |o| {
            for b in &snaps {
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_retries_total{{backend=\"{}\"}} {}",
                    b.name, b.retries
                );
            }
        },
    );
    family(
        "webstack_lb_backend_health_transitions_total",
        "counter",
        "Health changes by direction.",
        &mut |o| {
            for b in &snaps {
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_health_transitions_total{{backend=\"{}\",to=\"up\"}} {}",
                    b.name, b.went_up
                );
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_health_transitions_total{{backend=\"{}\",to=\"down\"}} {}",
                    b.name, b.went_down
                );
            }
        },
    );
    family(
        "webstack_lb_backend_response_seconds",
        "histogram",
        "Time to the backend's response head.",
        &mut |o| {
            for b in &pool.backends {
                let st = &b.stats;
                for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&st.latency_buckets) {
                    let _ = writeln!(o, "webstack_lb_backend_response_seconds_bucket{{backend=\"{}\",le=\"{bound}\"}} {}", b.config.name, bucket.load(std::sync::atomic::Ordering::Relaxed));
                }
                let count = st.latency_count.load(std::sync::atomic::Ordering::Relaxed);
                let _ = writeln!(o, "webstack_lb_backend_response_seconds_bucket{{backend=\"{}\",le=\"+Inf\"}} {count}", b.config.name);
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_response_seconds_sum{{backend=\"{}\"}} {}",
                    b.config.name,
                    st.latency_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
                );
                let _ = writeln!(
                    o,
                    "webstack_lb_backend_response_seconds_count{{backend=\"{}\"}} {count}",
                    b.config.name
                );
            }
        },
    );
    out
}
