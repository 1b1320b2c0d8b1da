//! `webstack alerts`, `webstack trace ID` and the alerts line of `webstack status`: what
//! the design's collector holds, asked over its query API from the operator's address.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use webstack_topology::Design;

use crate::operator::exchange;
use crate::status::table;

/// The design's collector (the first, if it has several).
pub fn collector(design: &Design) -> Option<(String, SocketAddr)> {
    design.servers.iter().find_map(|s| {
        s.collector
            .as_ref()
            .map(|c| (s.name.clone(), SocketAddr::new(s.address, c.port)))
    })
}

async fn get(design: &Design, path: &str) -> Result<(u16, Value)> {
    let Some((name, addr)) = collector(design) else {
        bail!("design {} has no collector: add [servers.NAME.collector] and point the agents' monitoring.collector at it", design.name);
    };
    let (status, body) = exchange(addr, "GET", path, "").await.with_context(|| {
        format!("cannot reach the collector on {name} ({addr}); is it running? (`webstack status`)")
    })?;
    if status == 404 {
        return Ok((status, Value::String(body.trim().to_string())));
    }
    if status != 200 {
        bail!("the collector answered {status}: {}", body.trim());
    }
    let v = serde_json::from_str(&body).context("the collector's answer is not JSON")?;
    Ok((status, v))
}

/// The pending and firing alerts.
pub async fn alerts(design: &Design) -> Result<Vec<Value>> {
    let (_, v) = get(design, "/api/alerts").await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

pub fn render_alerts(alerts: &[Value], now: f64) -> String {
    if alerts.is_empty() {
        return "No alert is pending or firing.\n".into();
    }
    let mut rows = vec![[
        "STATE".to_string(),
        "ALERT".into(),
        "SEVERITY".into(),
        "FOR".into(),
        "SUMMARY".into(),
    ]];
    for a in alerts {
        let since = a["active_since"].as_f64().unwrap_or(now);
        rows.push([
            a["state"].as_str().unwrap_or("").to_uppercase(),
            a["name"].as_str().unwrap_or("").into(),
            a["severity"].as_str().unwrap_or("").into(),
            format!("{:.0}s", (now - since).max(0.0)),
            a["summary"].as_str().unwrap_or("").into(),
        ]);
    }
    table(&rows)
}

/// The line `webstack status` adds: what fires, or that nothing does.
pub async fn status_line(design: &Design) -> Option<String> {
    collector(design)?;
    Some(match alerts(design).await {
        Ok(a) => {
            let firing: Vec<String> = a
                .iter()
                .filter(|a| a["state"] == "firing")
                .map(|a| {
                    format!(
                        "{} ({})",
                        a["name"].as_str().unwrap_or(""),
                        a["summary"].as_str().unwrap_or("")
                    )
                })
                .collect();
            if firing.is_empty() {
                "Alerts: none firing".to_string()
            } else {
                format!(
                    "Alerts firing ({}):\n  {}",
                    firing.len(),
                    firing.join("\n  ")
                )
            }
        }
        Err(e) => format!("Alerts: unknown ({e:#})"),
    })
}

/// The chain of servers a failed request crossed, outermost first, with each hop's time
/// and error; addresses in errors are named after the design's servers.
pub async fn trace(design: &Design, id: &str) -> Result<(Vec<Value>, String)> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        bail!("{id:?} is not a request id (they are up to 128 visible characters, as in the X-Request-Id header)");
    }
    let (status, v) = get(design, &format!("/api/trace/{id}")).await?;
    if status == 404 {
        bail!("{}", v.as_str().unwrap_or("no such trace"));
    }
    let spans = v.as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if let Some(first) = spans.first() {
        out.push_str(&format!(
            "request {} (trace {}): {}\n",
            first["request_id"].as_str().unwrap_or(""),
            first["trace_id"].as_str().unwrap_or(""),
            first["status"]
        ));
    }
    let start = spans.first().and_then(|s| s["at"].as_f64()).unwrap_or(0.0);
    for (i, s) in spans.iter().enumerate() {
        let indent = "  ".repeat(i + 1);
        out.push_str(&format!(
            "{indent}{} {} {} {} → {} at +{:.1} ms, took {:.1} ms\n",
            s["server"].as_str().unwrap_or(""),
            s["component"].as_str().unwrap_or(""),
            s["method"].as_str().unwrap_or(""),
            s["target"].as_str().unwrap_or(""),
            s["status"],
            (s["at"].as_f64().unwrap_or(start) - start) * 1000.0,
            s["duration_ms"].as_f64().unwrap_or(0.0),
        ));
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("{indent}  error: {}\n", name_addresses(design, e)));
        }
    }
    Ok((spans, out))
}

/// `… app server 127.10.2.11:8000 …` → `… app server 127.10.2.11:8000 (app of server1) …`.
fn name_addresses(design: &Design, text: &str) -> String {
    let mut out = text.to_string();
    for s in &design.servers {
        let ports = [
            s.app.as_ref().map(|a| (a.port, "app")),
            s.web.as_ref().map(|w| (w.port, "web")),
            s.database.as_ref().map(|d| (d.port, "database")),
        ];
        for (port, what) in ports.into_iter().flatten() {
            let addr = format!("{}:{port}", s.address);
            if out.contains(&addr) && !out.contains(&format!("{addr} (")) {
                out = out.replace(&addr, &format!("{addr} ({what} of {})", s.name));
            }
        }
    }
    out
}
