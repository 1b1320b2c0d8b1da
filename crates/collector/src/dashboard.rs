//! The dashboard: the design drawn as its whiteboard (tiers of servers), each server's
//! health from its agent, request and error rates per tier and per server, replication
//! lag, the alerts that fire and the newest error traces. Rendered on the server; a
//! dozen lines of inline script replace the live part every second (no build step, no
//! library), and the page works without them (it is whole at every load).

use std::fmt::Write;
use std::time::Duration;

use hyper::Response;
use webstack_alerts::{Alert, AlertState, Selector, Source};
use webstack_net::http::{full, Body};

use crate::store::Store;

/// The design as the dashboard draws it; the node builds it from the design.
#[derive(Debug, Clone, Default)]
pub struct Whiteboard {
    pub title: String,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone)]
pub struct Tier {
    /// `load balancer`, `web + app + database`, …
    pub name: String,
    pub servers: Vec<BoardServer>,
}

#[derive(Debug, Clone)]
pub struct BoardServer {
    pub name: String,
    pub address: String,
    pub components: Vec<String>,
    /// Whether it has an agent reporting here (else its health is unknown).
    pub monitored: bool,
}

/// The window live rates are taken over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn sel(metric: &str, matchers: &[(&str, &str)]) -> Selector {
    Selector {
        metric: metric.into(),
        matchers: matchers
            .iter()
            .map(|(k, v)| webstack_alerts::Matcher::Eq(k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Requests per second over the rate window, of the series matching.
fn rate(store: &Store, now: f64, matchers: &[(&str, &str)]) -> f64 {
    let view = store.at(now);
    view.range(&sel("webstack_http_requests_total", matchers), RATE_WINDOW)
        .iter()
        .filter_map(|(_, pts)| {
            let (first, last) = (pts.first()?, pts.last()?);
            (last.0 > first.0).then(|| (last.1 - first.1).max(0.0) / (last.0 - first.0))
        })
        .sum::<f64>()
        // No "-0.0 req/s".
        + 0.0
}

pub fn page(board: &Whiteboard, store: &Store, alerts: &[Alert], now: f64) -> Response<Body> {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · webstack dashboard</title>
<meta name="viewport" content="width=device-width">
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}}
h1{{font-size:1.3em}} h2{{font-size:1.05em;margin-top:1.5em}}
.tiers{{display:flex;flex-direction:column;gap:.8em}}
.tier{{border:1px dashed #999;border-radius:6px;padding:.6em}}
.tier>.name{{font-weight:600;margin-bottom:.4em}}
.servers{{display:flex;gap:.8em;flex-wrap:wrap}}
.server{{border:2px solid #888;border-radius:6px;padding:.5em .8em;min-width:12em;background:#fff}}
.server[data-health=up]{{border-color:#2a8a3a}} .server[data-health=down]{{border-color:#c0262d;background:#fdecec}}
.health{{font-weight:700}} .up .health,[data-health=up] .health{{color:#2a8a3a}} [data-health=down] .health{{color:#c0262d}}
table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left}}
.firing{{color:#c0262d;font-weight:600}} .pending{{color:#b36b00}} .muted{{color:#777}}
</style></head><body>
<h1>{title}</h1>
<div id="live">"#,
        title = esc(&board.title)
    );
    live_html(&mut html, board, store, alerts, now);
    html.push_str(
        r#"</div>
<script>
// Refreshes the live part every second; the page is complete without it.
setInterval(function () {
  fetch('/dashboard/live').then(function (r) { return r.ok ? r.text() : null; })
    .then(function (t) { if (t !== null) document.getElementById('live').innerHTML = t; })
    .catch(function () {});
}, 1000);
</script>
</body></html>
"#,
    );
    html_response(html)
}

pub fn live(board: &Whiteboard, store: &Store, alerts: &[Alert], now: f64) -> Response<Body> {
    let mut html = String::new();
    live_html(&mut html, board, store, alerts, now);
    html_response(html)
}

fn html_response(html: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(full(html))
        .expect("static headers are valid")
}

fn live_html(html: &mut String, board: &Whiteboard, store: &Store, alerts: &[Alert], now: f64) {
    let agents: Vec<_> = store.agents().collect();
    let up = |name: &str| agents.iter().find(|a| a.server == name).map(|a| a.up(now));
    let firing = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    let _ = write!(
        html,
        r#"<p class="muted">Updated {} · {} of {} agents reporting · <span class="{}">{firing} alerts firing</span> · a server that stops reporting shows as down within 3 agent intervals (3 s by default) plus 1 s</p>"#,
        clock(now),
        agents.iter().filter(|a| a.up(now)).count(),
        board
            .tiers
            .iter()
            .flat_map(|t| &t.servers)
            .filter(|s| s.monitored)
            .count(),
        if firing > 0 { "firing" } else { "muted" },
    );
    html.push_str(r#"<h2>Whiteboard</h2><div class="tiers">"#);
    for tier in &board.tiers {
        let components: Vec<&str> = ["load_balancer", "web", "app"]
            .into_iter()
            .filter(|c| {
                tier.servers
                    .iter()
                    .any(|s| s.components.iter().any(|x| x == c))
            })
            .collect();
        let mut rates = String::new();
        for c in components {
            let mut total = 0.0;
            let mut errors = 0.0;
            for s in &tier.servers {
                total += rate(store, now, &[("server", &s.name), ("component", c)]);
                errors += rate(
                    store,
                    now,
                    &[("server", &s.name), ("component", c), ("status", "5xx")],
                );
            }
            let _ = write!(rates, " · {c}: {total:.1} req/s, {errors:.1} 5xx/s");
        }
        let _ = write!(
            html,
            r#"<div class="tier"><div class="name">{}<span class="muted">{}</span></div><div class="servers">"#,
            esc(&tier.name),
            esc(&rates)
        );
        for s in &tier.servers {
            let health = match (s.monitored, up(&s.name)) {
                (_, Some(true)) => "up",
                (true, Some(false)) => "down",
                (true, None) => "waiting",
                (false, _) => "unknown",
            };
            let label = match health {
                "up" => "up",
                "down" => "DOWN: not reporting",
                "waiting" => "no report yet",
                _ => "no agent",
            };
            let _ = write!(
                html,
                r#"<div class="server" data-server="{name}" data-health="{health}"><div><b>{name}</b> <span class="muted">{addr}</span></div><div class="health">{label}</div><div class="muted">{components}</div>"#,
                name = esc(&s.name),
                addr = esc(&s.address),
                components = esc(&s.components.join(", ")),
            );
            if health == "up" {
                let total = rate(store, now, &[("server", &s.name)]);
                let errors = rate(store, now, &[("server", &s.name), ("status", "5xx")]);
                let _ = write!(html, "<div>{total:.1} req/s · {errors:.1} 5xx/s</div>");
                for (labels, v) in
                    store.latest("webstack_component_ready", &[("server", &s.name)], now)
                {
                    if v == 0.0 {
                        let _ = write!(
                            html,
                            r#"<div class="firing">{} {}</div>"#,
                            esc(labels.get("component").map_or("", String::as_str)),
                            esc(labels.get("state").map_or("", String::as_str))
                        );
                    }
                }
                for (_, lag) in store.latest(
                    "webstack_db_replication_lag_seconds",
                    &[("server", &s.name)],
                    now,
                ) {
                    let _ = write!(html, "<div>replication lag {:.2} s</div>", lag);
                }
            }
            html.push_str("</div>");
        }
        html.push_str("</div></div>");
    }
    html.push_str("</div><h2>Alerts</h2>");
    if alerts.is_empty() {
        html.push_str(r#"<p class="muted" id="no-alerts">No alert is pending or firing.</p>"#);
    } else {
        html.push_str(
            "<table id=\"alerts\"><tr><th>state</th><th>alert</th><th>severity</th><th>summary</th><th>since</th></tr>",
        );
        for a in alerts {
            let state = if a.state == AlertState::Firing {
                "firing"
            } else {
                "pending"
            };
            let _ = write!(
                html,
                r#"<tr class="{state}"><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&a.rule),
                esc(&a.severity),
                esc(&a.summary),
                clock(a.active_since)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Recent error traces</h2>");
    let traces = store.recent_traces(10);
    if traces.is_empty() {
        html.push_str(r#"<p class="muted">No request has failed recently.</p>"#);
    } else {
        html.push_str("<table id=\"traces\"><tr><th>time</th><th>status</th><th>request id</th><th>servers crossed</th><th>error</th></tr>");
        for t in traces {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                clock(t.at),
                t.status,
                esc(&t.request_id),
                esc(&t.hops.join(" → ")),
                esc(t.error.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</table>");
    }
}

/// `HH:MM:SS` UTC.
fn clock(t: f64) -> String {
    let s = t as u64 % 86400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}
