//! The built-in foobar application: a home page, a guestbook API backed by the database,
//! and `/health`. Every response names the app server that answered (`X-Served-By`).

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use webstack_net::http::{full, Body};

use crate::storage::Storage;

/// The static files of the codebase (its `public/` folder), served by the web server.
pub const PUBLIC_FILES: &[(&str, &[u8])] = &[
    (
        "static/style.css",
        include_bytes!("../codebase/foobar/public/static/style.css"),
    ),
    (
        "robots.txt",
        include_bytes!("../codebase/foobar/public/robots.txt"),
    ),
    (
        "favicon.svg",
        include_bytes!("../codebase/foobar/public/favicon.svg"),
    ),
];

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_AUTHOR_CHARS: usize = 64;
const MAX_MESSAGE_CHARS: usize = 1000;
const LIST_LIMIT: u32 = 50;

pub struct Foobar {
    pub server_name: String,
    /// The release label of the codebase (`webstack deploy --version`), named in every
    /// response (`X-App-Version`) so a rolling deploy's mixed state is visible.
    pub version: String,
    pub storage: Arc<Storage>,
}

#[derive(Deserialize)]
struct NewMessage {
    author: Option<String>,
    message: String,
}

/// The route a path belongs to, for metrics (never the raw path: one series per URL
/// would grow without bound).
pub fn route_template(path: &str) -> &'static str {
    match path {
        "/" => "/",
        // The same template as the web server's health path: health checks are one route.
        "/health" => "health",
        "/api/messages" => "/api/messages",
        _ => "other",
    }
}

impl Foobar {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let after = last_write_gtid(&req);
        let mut resp = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/") => self.home(after.as_deref()).await,
            (&Method::GET | &Method::HEAD, "/health") => self.health().await,
            (&Method::GET | &Method::HEAD, "/api/messages") => self.list(after.as_deref()).await,
            (&Method::POST, "/api/messages") => self.post(req).await,
            (_, path @ ("/" | "/health" | "/api/messages")) => {
                // RFC 9110 §15.5.6: a 405 MUST say which methods the resource takes.
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
                let allow = if path == "/api/messages" {
                    "GET, HEAD, POST"
                } else {
                    "GET, HEAD"
                };
                r.headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            _ => error(StatusCode::NOT_FOUND, "no such page"),
        };
        resp.headers_mut().insert(
            "x-served-by",
            HeaderValue::from_str(&self.server_name).expect("server names are ASCII"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.version) {
            resp.headers_mut().insert("x-app-version", v);
        }
        resp
    }

    async fn health(&self) -> Response<Body> {
        let primary = self.storage.primary_name();
        match self.storage.ping().await {
            Ok(()) => json_response(
                StatusCode::OK,
                json!({"status": "ok", "server": self.server_name, "version": self.version, "database": primary, "database_reachable": true}),
            ),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "degraded", "server": self.server_name, "version": self.version, "database": primary, "database_reachable": false, "error": e.to_string()}),
            ),
        }
    }

    async fn list(&self, after: Option<&str>) -> Response<Body> {
        match self.storage.list_messages(LIST_LIMIT, after).await {
            Ok((messages, answered)) => with_database(
                json_response(StatusCode::OK, json!({"messages": messages})),
                &answered,
            ),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the database is unavailable: {e}"),
            ),
        }
    }

    async fn post(&self, req: Request<Incoming>) -> Response<Body> {
        let form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/json"))
            .unwrap_or(false);
        if !form && !is_json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send application/json like {\"author\": \"ada\", \"message\": \"hello\"}",
            );
        }
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_none() =>
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body is malformed ({e})"),
                );
            }
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is limited to {MAX_BODY_BYTES} bytes"),
                )
            }
        };
        let new: NewMessage = if form {
            let mut author = None;
            let mut message = None;
            for (k, v) in form_pairs(&body) {
                match k.as_str() {
                    "author" => author = Some(v),
                    "message" => message = Some(v),
                    _ => {}
                }
            }
            match message {
                Some(message) => NewMessage { author, message },
                None => return error(StatusCode::BAD_REQUEST, "the form has no message field"),
            }
        } else {
            match serde_json::from_slice(&body) {
                Ok(m) => m,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("the body is not a message: {e}; send {{\"author\": \"ada\", \"message\": \"hello\"}}")),
            }
        };
        let author = new
            .author
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "anonymous".into());
        let message = new.message.trim().to_string();
        if message.is_empty() {
            return error(StatusCode::BAD_REQUEST, "the message is empty");
        }
        if message.chars().count() > MAX_MESSAGE_CHARS || author.chars().count() > MAX_AUTHOR_CHARS
        {
            return error(StatusCode::BAD_REQUEST, &format!("messages are at most {MAX_MESSAGE_CHARS} characters and authors {MAX_AUTHOR_CHARS}"));
        }
        match self
            .storage
            .add_message(&author, &message, &self.server_name)
            .await
        {
            Ok(written) => {
                let mut resp = if form {
                    Response::builder()
                        .status(StatusCode::SEE_OTHER)
                        .header(LOCATION, "/")
                        .body(full(""))
                        .unwrap()
                } else {
                    json_response(StatusCode::CREATED, json!(written.message))
                };
                // Read-your-writes: this client's next reads wait for this transaction on a
                // replica, or go to the primary.
                if let Some(gtid) = written
                    .gtid
                    .as_deref()
                    .and_then(|g| HeaderValue::from_str(g).ok())
                {
                    resp.headers_mut().insert("x-last-write-gtid", gtid.clone());
                    if let Ok(cookie) = HeaderValue::from_str(&format!(
                        "{GTID_COOKIE}={}; Path=/; Max-Age=300; HttpOnly",
                        gtid.to_str().unwrap_or_default()
                    )) {
                        resp.headers_mut().insert(SET_COOKIE, cookie);
                    }
                }
                with_database(resp, &self.storage.primary_name())
            }
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the message was not saved: {e}"),
            ),
        }
    }

    async fn home(&self, after: Option<&str>) -> Response<Body> {
        let mut answered = self.storage.primary_name();
        let listing = match self.storage.list_messages(20, after).await {
            Ok((messages, by)) if messages.is_empty() => {
                answered = by;
                "<p>No messages yet. Be the first.</p>".to_string()
            }
            Ok((messages, by)) => {
                answered = by;
                let items: String = messages
                    .iter()
                    .map(|m| {
                        format!(
                            "<li><div>{}</div><div class=\"meta\">{} · #{} · via {}</div></li>",
                            escape_html(&m.message),
                            escape_html(&m.author),
                            m.id,
                            escape_html(&m.served_by)
                        )
                    })
                    .collect();
                format!("<ul class=\"messages\">{items}</ul>")
            }
            Err(e) => format!(
                "<p><strong>The database is unavailable:</strong> {}</p>",
                escape_html(&e.to_string())
            ),
        };
        let page = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>foobar</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"><link rel=\"icon\" href=\"/favicon.svg\"></head>\
             <body><h1>www.foobar.com</h1><p class=\"served\">Served by app server <strong>{server}</strong>, data from <strong>{db}</strong>.</p>\
             <h2>Guestbook</h2><form method=\"post\" action=\"/api/messages\"><input name=\"author\" placeholder=\"your name\" maxlength=\"64\">\
             <textarea name=\"message\" placeholder=\"say hello\" maxlength=\"1000\" required></textarea><button>Sign</button></form>{listing}</body></html>\n",
            server = escape_html(&self.server_name),
            db = escape_html(&answered),
        );
        with_database(
            Response::builder()
                .header(CONTENT_TYPE, "text/html; charset=utf-8")
                .body(full(page))
                .unwrap(),
            &answered,
        )
    }
}

/// The cookie that carries a client's last write's GTID.
const GTID_COOKIE: &str = "webstack_gtid";

/// The GTID of the client's last write, from its cookie or an `X-Last-Write-Gtid` header;
/// only well-formed positions (`domain-server-sequence`) are taken.
fn last_write_gtid(req: &Request<Incoming>) -> Option<String> {
    let from_header = req
        .headers()
        .get("x-last-write-gtid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_cookie = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == GTID_COOKIE)
        .map(|(_, v)| v.to_string());
    from_header.or(from_cookie).filter(|g| {
        let parts: Vec<&str> = g.split('-').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Names the database server that answered.
fn with_database(mut resp: Response<Body>, answered: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(answered) {
        resp.headers_mut().insert("x-database", v);
    }
    resp
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(&value).expect("JSON values serialise");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap()
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = json_response(status, json!({"error": message}));
    if status.is_server_error() {
        // The reason, for the request's error trace.
        resp.extensions_mut()
            .insert(webstack_net::http::Failure(message.into()));
    }
    resp
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}
