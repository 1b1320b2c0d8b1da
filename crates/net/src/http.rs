//! The HTTP/1.1 serving loop every HTTP component shares: limits, timeouts and graceful
//! shutdown in one place, so the web server and the app server cannot differ on them.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::request_rules::{Verdict, ALLOWED_METHODS};

/// The error type of every response body webstack sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response webstack sends: a buffer, a file range or a proxied stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A plain-text response, for errors a person reads.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    let failure = status
        .is_server_error()
        .then(|| Failure(message.as_str().into()));
    let mut body = message;
    body.push('\n');
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static headers are valid");
    if let Some(f) = failure {
        resp.extensions_mut().insert(f);
    }
    resp
}

/// Why a server answered 5xx itself (the text of its error page), kept on the response
/// for its error trace; a 5xx passed on from the next hop has none.
#[derive(Debug, Clone)]
pub struct Failure(pub std::sync::Arc<str>);

/// Limits and timeouts of an HTTP listener. The defaults follow nginx's.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Request line plus headers, in bytes (nginx: large_client_header_buffers 4 8k).
    /// Past it the client gets 431.
    pub max_header_bytes: usize,
    /// The request target, in bytes (nginx: one 8k buffer for the request line). Past it
    /// the client gets 414.
    pub max_target_bytes: usize,
    pub max_headers: usize,
    /// How long a client may take to send its request head (nginx: client_header_timeout 60s).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 32 * 1024,
            max_target_bytes: 8 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

pub use crate::serve::{
    serve, serve_front, serve_site, AcmeChallenges, ConnectionInfo, Front, Https,
};

/// The answer a front gives itself to a request the rules refuse or that asks about the
/// server (`OPTIONS *`).
pub(crate) fn refusal(verdict: Verdict) -> Response<Body> {
    let mut response = match verdict {
        Verdict::BadRequest(reason) => {
            let mut r = text(
                StatusCode::BAD_REQUEST,
                format!("400 Bad Request: {reason}"),
            );
            // Whatever follows a malformed head on this connection cannot be trusted.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Verdict::UriTooLong => {
            let mut r = text(
                StatusCode::URI_TOO_LONG,
                "414 URI Too Long: the request target is longer than this server takes",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Verdict::MethodNotAllowed(reason) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("405 Method Not Allowed: {reason}"),
        ),
        Verdict::ServerOptions | Verdict::Pass { .. } => options_here(),
    };
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}

/// 200 with `Allow` and no body: an OPTIONS request answered by this server itself.
fn options_here() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::ALLOW, ALLOWED_METHODS)
        .header(header::CONTENT_LENGTH, "0")
        .body(full(Bytes::new()))
        .expect("static headers are valid")
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// The request headers a proxy (web server or load balancer) named `via` forwards:
/// hop-by-hop ones removed (RFC 9110 §7.6.1), `Via` appended (§7.6.3: a gateway MUST),
/// `Max-Forwards` of an OPTIONS request decremented (§7.6.2), X-Forwarded-* and
/// X-Request-Id set. `Err` is the answer the proxy gives itself instead of forwarding:
/// an OPTIONS request whose Max-Forwards is 0 ends here (TRACE never gets this far).
pub fn forwarded_headers(
    parts: &hyper::http::request::Parts,
    peer: SocketAddr,
    request_id: &str,
    via: &str,
) -> Result<HeaderMap, Box<Response<Body>>> {
    let incoming = &parts.headers;
    let mut headers = incoming.clone();
    remove_hop_by_hop(&mut headers);
    // Both proxies read the whole body before forwarding, so the client's expectation was
    // met here (hyper sent its 100 Continue); the next hop has nothing to wait for.
    headers.remove(header::EXPECT);
    if parts.method == hyper::Method::OPTIONS {
        if let Some(value) = incoming.get(header::MAX_FORWARDS) {
            match value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(0) => return Err(Box::new(options_here())),
                Some(n) => {
                    headers.insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
                }
                None => {
                    return Err(Box::new(text(
                        StatusCode::BAD_REQUEST,
                        "400 Bad Request: Max-Forwards is not a number (RFC 9110 section 7.6.2)",
                    )))
                }
            }
        }
    }
    let protocol = if parts.version == hyper::Version::HTTP_10 {
        "1.0"
    } else {
        "1.1"
    };
    let via_value = match incoming.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {protocol} {via}"),
        None => format!("{protocol} {via}"),
    };
    headers.remove(header::VIA);
    headers.insert(
        header::VIA,
        HeaderValue::from_str(&via_value).expect("server names are header text"),
    );
    let xff = HeaderName::from_static("x-forwarded-for");
    let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert(
        xff,
        HeaderValue::from_str(&chain).expect("addresses are valid header text"),
    );
    // A TLS hop says so whatever the client claimed; a plain hop keeps what the hop in
    // front of it (a TLS-terminating load balancer) said.
    let proto = HeaderName::from_static("x-forwarded-proto");
    if parts
        .extensions
        .get::<ConnectionInfo>()
        .is_some_and(|c| c.tls)
    {
        headers.insert(proto, HeaderValue::from_static("https"));
    } else if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    if let Some(host) = incoming.get(header::HOST).cloned() {
        headers
            .entry(HeaderName::from_static("x-forwarded-host"))
            .or_insert(host);
    }
    headers.insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(request_id).expect("request ids are checked"),
    );
    Ok(headers)
}

/// The request a proxy sends on: `method` for `path` (the client's, already checked by
/// hyper and the request rules) in origin form, with `body` and the forwarded `headers`.
pub fn outgoing<B>(
    method: &hyper::Method,
    path: Option<&hyper::http::uri::PathAndQuery>,
    body: B,
    headers: HeaderMap,
) -> hyper::Request<B> {
    let mut out = hyper::Request::new(body);
    *out.method_mut() = method.clone();
    *out.uri_mut() = match path {
        Some(p) => hyper::Uri::from(p.clone()),
        None => hyper::Uri::from_static("/"),
    };
    *out.headers_mut() = headers;
    out
}

pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names tells, instead of a
    // lookup of each hop-by-hop name (the names listed in Connection need Connection).
    if !headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()))
    {
        return;
    }
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Keeps a client's or load balancer's request id when it is sane (1 to 128 visible ASCII
/// characters), otherwise makes a new one, so one id follows a request through every tier.
pub fn request_id(incoming: Option<&HeaderValue>) -> String {
    if let Some(id) = incoming.and_then(|v| v.to_str().ok()) {
        if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
            return id.to_string();
        }
    }
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// The request's id (see [`request_id`]), written back into its headers so the handler
/// and every hop after it see the same one.
pub fn ensure_request_id(headers: &mut HeaderMap) -> String {
    let id = request_id(headers.get("x-request-id"));
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&id).expect("request ids are visible ASCII"),
    );
    id
}

/// RandomState is seeded from the OS once per thread and then varies per instance:
/// unpredictable enough for request and trace ids, which are not secrets.
pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The innermost cause of an error, which is what a person needs in a 502 message
/// (`connection refused`, not `client error (Connect)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
