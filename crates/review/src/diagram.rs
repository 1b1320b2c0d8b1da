//! Draws the whiteboard: servers as boxes with their components, the way from the user
//! through DNS to the load balancers (and floating IP), the web, app and database tiers,
//! replication, firewalls and monitoring agents. SVG written by hand (no Graphviz), plus
//! Mermaid and DOT text.

use std::collections::HashMap;
use std::fmt::Write;

use webstack_topology::{DatabaseRole, Design, RecordTarget, Server};

/// An arrow of the whiteboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: String,
    pub dashed: bool,
}

const USER: &str = "user";
const DNS: &str = "dns";

/// Every arrow of the design, between node ids (server names, floating IP names, `user`,
/// `dns`). Arrows from a server to itself (a web server proxying to its own app server)
/// are drawn inside its box instead.
pub fn edges(design: &Design) -> Vec<Edge> {
    let mut out = Vec::new();
    let mut add = |from: &str, to: &str, label: &str, dashed: bool| {
        if from != to && !out.iter().any(|e: &Edge| e.from == from && e.to == to) {
            out.push(Edge {
                from: from.into(),
                to: to.into(),
                label: label.into(),
                dashed,
            });
        }
    };
    add(USER, DNS, "lookup", true);
    for r in design.dns.records.iter().filter(|r| r.name == "www") {
        for t in &r.targets {
            match t {
                RecordTarget::Server(s) => add(USER, s, "HTTP", false),
                RecordTarget::FloatingIp(f) => add(USER, f, "HTTP", false),
                RecordTarget::Address(_) => {}
            }
        }
    }
    for f in &design.floating_ips {
        for (i, s) in f.servers.iter().enumerate() {
            add(&f.name, s, if i == 0 { "active" } else { "passive" }, i > 0);
        }
    }
    for s in &design.servers {
        if let Some(lb) = &s.load_balancer {
            for b in &lb.backends {
                add(
                    &s.name,
                    &b.server,
                    &format!("{:?}", lb.algorithm).to_lowercase(),
                    false,
                );
            }
        }
        if let Some(w) = &s.web {
            for u in &w.upstreams {
                add(&s.name, u, "proxy", false);
            }
        }
        if let Some(a) = &s.app {
            if let Some(db) = &a.database {
                add(&s.name, db, "SQL", false);
            }
        }
        if let Some(d) = &s.database {
            if let DatabaseRole::Replica { of } = &d.role {
                add(of, &s.name, "replication", true);
            }
        }
        if let Some(c) = s.monitoring.as_ref().and_then(|m| m.collector.as_ref()) {
            add(&s.name, c, "telemetry", true);
        }
    }
    out
}

/// The lines inside a server's box.
fn component_lines(s: &Server) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(lb) = &s.load_balancer {
        let tls = lb
            .tls
            .as_ref()
            .map(|t| format!(", HTTPS :{}", t.port))
            .unwrap_or_default();
        lines.push(format!("load balancer :{}{tls}", lb.port));
    }
    if let Some(w) = &s.web {
        let tls = w
            .tls
            .as_ref()
            .map(|t| format!(", HTTPS :{}", t.port))
            .unwrap_or_default();
        let local = if w.upstreams.contains(&s.name) {
            " → local app"
        } else {
            ""
        };
        lines.push(format!("web server :{}{tls}{local}", w.port));
    }
    if let Some(a) = &s.app {
        let local = if a.database.as_deref() == Some(s.name.as_str()) {
            " → local db"
        } else {
            ""
        };
        lines.push(format!("app server :{}{local}", a.port));
    }
    if let Some(d) = &s.database {
        let role = match &d.role {
            DatabaseRole::Primary => "MySQL primary".to_string(),
            DatabaseRole::Replica { of } => format!("MySQL replica of {of}"),
        };
        lines.push(format!("{role} :{}", d.port));
    }
    if let Some(c) = &s.collector {
        lines.push(format!("monitoring collector :{}", c.port));
        lines.push(format!("dashboard, {} alert rules", c.alerts.len()));
    }
    if s.monitoring.is_some() {
        lines.push("monitoring agent".into());
    }
    lines
}

/// Which row a server goes in: its front-most tier.
fn row_of(s: &Server) -> usize {
    if s.load_balancer.is_some() {
        2
    } else if s.web.is_some() {
        3
    } else if s.app.is_some() {
        4
    } else {
        5
    }
}

struct Placed {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

const BOX_W: f64 = 230.0;
const LINE_H: f64 = 17.0;
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 70.0;
const MARGIN: f64 = 30.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A box of the drawing: a server, a floating IP, the user or DNS.
struct Node<'a> {
    id: String,
    row: usize,
    title: String,
    lines: Vec<String>,
    server: Option<&'a Server>,
}

/// The SVG drawing. `health`, for a running stack, colours each server: true healthy,
/// false failing; servers it does not name are drawn neutral.
pub fn svg(design: &Design, health: &HashMap<String, bool>) -> String {
    let node = |id: &str, row, title: String, lines: Vec<String>, server| Node {
        id: id.to_string(),
        row,
        title,
        lines,
        server,
    };
    let mut nodes: Vec<Node<'_>> = vec![
        node(USER, 0, "user".into(), vec!["browser or curl".into()], None),
        node(
            DNS,
            0,
            format!("DNS {}", design.domain),
            vec![
                name_servers(design),
                design
                    .dns
                    .records
                    .iter()
                    .map(|r| format!("{} A", design.fqdn(&r.name)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
            None,
        ),
    ];
    for f in &design.floating_ips {
        nodes.push(node(
            &f.name,
            1,
            format!("floating IP {}", f.name),
            vec![
                f.address.to_string(),
                format!("held by {}", f.servers.join(" / ")),
            ],
            None,
        ));
    }
    for s in &design.servers {
        nodes.push(node(
            &s.name,
            row_of(s),
            format!("{}  {}", s.name, s.address),
            component_lines(s),
            Some(s),
        ));
    }
    let rows: Vec<usize> = {
        let mut r: Vec<usize> = nodes.iter().map(|n| n.row).collect();
        r.sort();
        r.dedup();
        r
    };
    let width_of_row =
        |row: usize| nodes.iter().filter(|n| n.row == row).count() as f64 * (BOX_W + GAP_X) - GAP_X;
    let canvas_w = rows.iter().map(|r| width_of_row(*r)).fold(0.0, f64::max) + 2.0 * MARGIN;
    let mut placed: HashMap<String, Placed> = HashMap::new();
    let mut y = MARGIN + 24.0;
    for row in &rows {
        let in_row: Vec<&Node<'_>> = nodes.iter().filter(|n| n.row == *row).collect();
        let row_h = in_row
            .iter()
            .map(|n| 34.0 + n.lines.len() as f64 * LINE_H)
            .fold(0.0, f64::max);
        let mut x = (canvas_w - width_of_row(*row)) / 2.0;
        for n in in_row {
            placed.insert(
                n.id.clone(),
                Placed {
                    x,
                    y,
                    w: BOX_W,
                    h: 34.0 + n.lines.len() as f64 * LINE_H,
                },
            );
            x += BOX_W + GAP_X;
        }
        y += row_h + GAP_Y;
    }
    let canvas_h = y - GAP_Y + MARGIN;

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{canvas_w:.0}\" height=\"{canvas_h:.0}\" viewBox=\"0 0 {canvas_w:.0} {canvas_h:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#444\"/></marker></defs>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fbfbf8\"/>\n\
         <text x=\"{MARGIN}\" y=\"{:.0}\" font-size=\"16\" font-weight=\"bold\">{} — {}</text>\n",
        MARGIN + 4.0,
        escape(&design.name),
        escape(&design.fqdn("www"))
    );
    for e in edges(design) {
        let (Some(a), Some(b)) = (placed.get(&e.from), placed.get(&e.to)) else {
            continue;
        };
        let (x1, y1, x2, y2) = if b.y > a.y {
            (a.x + a.w / 2.0, a.y + a.h, b.x + b.w / 2.0, b.y)
        } else if b.y < a.y {
            (a.x + a.w / 2.0, a.y, b.x + b.w / 2.0, b.y + b.h)
        } else if b.x > a.x {
            // Same row: rightward arrows run a little above the middle, leftward ones a
            // little below, so a pair between two boxes (SQL one way, replication the
            // other) stays apart.
            (a.x + a.w, a.y + a.h / 2.0 - 8.0, b.x, b.y + b.h / 2.0 - 8.0)
        } else {
            (a.x, a.y + a.h / 2.0 + 8.0, b.x + b.w, b.y + b.h / 2.0 + 8.0)
        };
        let dash = if e.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(out, "<line x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"#444\" stroke-width=\"1.5\"{dash} marker-end=\"url(#arrow)\"><title>{} → {}: {}</title></line>", escape(&e.from), escape(&e.to), escape(&e.label));
        let (lx, ly) = if (y1 - y2).abs() < 1.0 {
            ((x1 + x2) / 2.0, if x2 > x1 { y1 - 5.0 } else { y1 + 14.0 })
        } else {
            ((x1 + x2) / 2.0 + 4.0, (y1 + y2) / 2.0 - 3.0)
        };
        let _ = writeln!(out, "<text x=\"{lx:.0}\" y=\"{ly:.0}\" fill=\"#444\" font-size=\"11\" text-anchor=\"middle\">{}</text>", escape(&e.label));
    }
    for Node {
        id,
        title,
        lines,
        server,
        ..
    } in &nodes
    {
        let p = &placed[id];
        let fill = match (server, health.get(id)) {
            (_, Some(true)) => "#d6efd6",
            (_, Some(false)) => "#f6c9c9",
            (Some(_), None) => "#ffffff",
            (None, None) => "#eef2f7",
        };
        let firewall = server.is_some_and(|s| s.firewall.is_some());
        let stroke = if firewall { "#c0392b" } else { "#333" };
        let stroke_w = if firewall { 3 } else { 1 };
        let _ = writeln!(out, "<g id=\"node-{}\"><rect x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{stroke_w}\"/>", escape(id), p.x, p.y, p.w, p.h);
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"{:.0}\" font-weight=\"bold\">{}</text>",
            p.x + 10.0,
            p.y + 20.0,
            escape(title)
        );
        if firewall {
            let _ = writeln!(out, "<text x=\"{:.0}\" y=\"{:.0}\" fill=\"#c0392b\" font-size=\"10\" text-anchor=\"end\">firewall</text>", p.x + p.w - 8.0, p.y + 20.0);
        }
        for (i, line) in lines.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                p.x + 10.0,
                p.y + 38.0 + i as f64 * LINE_H,
                escape(line)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// Where the zone's name servers answer: the primary, then its secondaries.
fn name_servers(design: &Design) -> String {
    let port = design.dns.port;
    let mut text = format!("{}:{port}", design.dns.address);
    for ip in &design.dns.secondaries {
        text.push_str(&format!(" + {ip}:{port} (secondary)"));
    }
    text
}

fn mermaid_id(id: &str) -> String {
    id.replace('-', "_")
}

/// The same whiteboard as Mermaid flowchart text.
pub fn mermaid(design: &Design) -> String {
    let mut out = String::from("flowchart TB\n");
    let _ = writeln!(out, "  {USER}([user])");
    let _ = writeln!(
        out,
        "  {DNS}[\"DNS {}<br/>{}\"]",
        design.domain,
        name_servers(design)
    );
    for f in &design.floating_ips {
        let _ = writeln!(
            out,
            "  {}((\"floating IP {}<br/>{}\"))",
            mermaid_id(&f.name),
            f.name,
            f.address
        );
    }
    for s in &design.servers {
        let mut label = format!("{} {}", s.name, s.address);
        for l in component_lines(s) {
            label.push_str("<br/>");
            label.push_str(&l);
        }
        if s.firewall.is_some() {
            label.push_str("<br/>firewall");
        }
        let _ = writeln!(
            out,
            "  {}[\"{}\"]",
            mermaid_id(&s.name),
            label.replace('"', "'")
        );
    }
    for e in edges(design) {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        let _ = writeln!(
            out,
            "  {} {arrow}|{}| {}",
            mermaid_id(&e.from),
            e.label.replace('|', "/"),
            mermaid_id(&e.to)
        );
    }
    out
}

/// The same whiteboard as Graphviz DOT text.
pub fn dot(design: &Design) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph {} {{\n  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n",
        q(&design.name)
    );
    let _ = writeln!(out, "  {} [shape=ellipse];", q(USER));
    let _ = writeln!(
        out,
        "  {} [label={}];",
        q(DNS),
        q(&format!("DNS {}\n{}", design.domain, name_servers(design)))
    );
    for f in &design.floating_ips {
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, label={}];",
            q(&f.name),
            q(&format!("floating IP {}\n{}", f.name, f.address))
        );
    }
    for s in &design.servers {
        let mut label = format!("{} {}", s.name, s.address);
        for l in component_lines(s) {
            label.push('\n');
            label.push_str(&l);
        }
        let colour = if s.firewall.is_some() {
            ", color=red, penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} [label={}{colour}];", q(&s.name), q(&label));
    }
    for e in edges(design) {
        let style = if e.dashed { ", style=dashed" } else { "" };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{style}];",
            q(&e.from),
            q(&e.to),
            q(&e.label)
        );
    }
    out.push_str("}\n");
    out
}
