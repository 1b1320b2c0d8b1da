//! The request rules of RFC 9112 and RFC 9110 that every HTTP front (load balancer, web
//! server, app server) enforces before its handler sees a request, decided here without
//! I/O: Host (RFC 9112 §3.2), the four forms of the request target (§3.2.1-§3.2.4) and
//! what a reverse proxy answers itself (CONNECT, TRACE, `OPTIONS *`).
//!
//! Framing (Content-Length, Transfer-Encoding, chunks, whitespace and folding in header
//! lines, bare CR, NUL) is checked by hyper's parser before a request exists; the tests
//! of `crates/webstack/tests/http_rules.rs` hold the table of every rule and its test.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Uri, Version};

/// The methods webstack's fronts take, for `Allow` in the answers they give themselves.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// What a front does with a request before its handler runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the handler. `host` is set when the request target was in absolute form:
    /// its authority replaces whatever Host said (RFC 9112 §3.2.2).
    Pass { host: Option<HeaderValue> },
    /// 400 Bad Request, with the reason a person reads; the connection is closed after it.
    BadRequest(&'static str),
    /// 405 with `Allow`: methods a reverse proxy never serves (CONNECT tunnels, TRACE,
    /// which would reflect cookies and credentials back to a script).
    MethodNotAllowed(&'static str),
    /// 414 URI Too Long.
    UriTooLong,
    /// `OPTIONS *` asks about the server itself: 200 with `Allow`, answered by the front.
    ServerOptions,
}

/// Applies the rules to a request's method, target, version and headers; `max_target` is
/// the longest request target the front takes.
pub fn check(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    max_target: usize,
) -> Verdict {
    // RFC 9110 §4.1: a target longer than the server wishes to parse MUST get 414.
    let target_len = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > max_target {
        return Verdict::UriTooLong;
    }
    // RFC 9112 §3.2: more than one Host line, or an invalid value, is 400 in any version;
    // a missing one is 400 in HTTP/1.1 (HTTP/1.0 clients may omit it).
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Verdict::BadRequest(
            "the request has more than one Host header (RFC 9112 section 3.2)",
        );
    }
    match host {
        // HTTP/2 carries the authority in its pseudo-header, which hyper puts in the URI.
        None if version >= Version::HTTP_2 && uri.authority().is_some() => {}
        None if version >= Version::HTTP_11 => {
            return Verdict::BadRequest("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)")
        }
        Some(value) if !valid_host(value.as_bytes()) => {
            return Verdict::BadRequest(
                "the Host header is not a valid host[:port] (RFC 9112 section 3.2, RFC 3986 section 3.2.2)",
            )
        }
        _ => {}
    }

    if method == Method::CONNECT {
        return Verdict::MethodNotAllowed("CONNECT: this server is not a forward proxy");
    }
    if method == Method::TRACE {
        return Verdict::MethodNotAllowed("TRACE is not served (it would echo credentials back)");
    }

    // The request target's form (RFC 9112 §3.2): origin-form `/path`, absolute-form
    // `http://host/path`, authority-form `host:port` (CONNECT only) or asterisk-form `*`
    // (OPTIONS only).
    if uri == "*" {
        return if method == Method::OPTIONS {
            Verdict::ServerOptions
        } else {
            Verdict::BadRequest(
                "the asterisk-form target `*` is only for OPTIONS (RFC 9112 section 3.2.4)",
            )
        };
    }
    match (uri.scheme_str(), uri.authority()) {
        (None, None) => Verdict::Pass { host: None },
        (Some("http" | "https"), Some(authority)) => {
            if authority.as_str().contains('@') {
                return Verdict::BadRequest(
                    "an http(s) target must not carry userinfo (RFC 9110 section 4.2.4)",
                );
            }
            match HeaderValue::from_str(authority.as_str()) {
                Ok(host) if valid_host(host.as_bytes()) => Verdict::Pass { host: Some(host) },
                _ => Verdict::BadRequest("the absolute-form target has an invalid host"),
            }
        }
        (Some(_), _) => Verdict::BadRequest("only http and https targets are served"),
        (None, Some(_)) => Verdict::BadRequest(
            "the authority-form target `host:port` is only for CONNECT (RFC 9112 section 3.2.3)",
        ),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), where uri-host is an IP literal in
/// brackets, an IPv4 address or a reg-name (RFC 3986 §3.2.2). An empty host is invalid for
/// `http` URIs (RFC 9110 §4.2.1), and so is a port past 65535.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let Ok(literal) = std::str::from_utf8(&value[1..end]) else {
            return false;
        };
        if !(literal.parse::<std::net::Ipv6Addr>().is_ok() || ipv_future(literal)) {
            return false;
        }
        match &value[end + 1..] {
            [] => (&value[..=end], None),
            [b':', port @ ..] => (&value[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return false;
    }
    if host[0] != b'[' && !reg_name(host) {
        return false;
    }
    match port {
        None | Some([]) => true,
        Some(digits) => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_some_and(|p| p <= 65535)
        }
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`; IPv4 addresses are reg-names
/// by their characters too.
fn reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            if i + 2 >= name.len()
                || !name[i + 1].is_ascii_hexdigit()
                || !name[i + 2].is_ascii_hexdigit()
            {
                return false;
            }
            i += 3;
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if !(unreserved || sub_delim) {
            return false;
        }
        i += 1;
    }
    true
}

/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn ipv_future(literal: &str) -> bool {
    let Some(rest) = literal.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, tail)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !tail.is_empty()
        && tail
            .bytes()
            .all(|b| b == b':' || (b != b'%' && reg_name(&[b])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn verdict(method: Method, target: &str, version: Version, hosts: &[&str]) -> Verdict {
        check(
            &method,
            &target.parse().unwrap(),
            version,
            &headers(hosts),
            8192,
        )
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_10: Version = Version::HTTP_10;
        assert_eq!(
            verdict(Method::GET, "/", HTTP_11, &["a.example"]),
            Verdict::Pass { host: None }
        );
        assert!(matches!(
            verdict(Method::GET, "/", HTTP_11, &[]),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::GET, "/", HTTP_11, &["a", "a"]),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::GET, "/", HTTP_10, &["a", "b"]),
            Verdict::BadRequest(_)
        ));
        assert_eq!(
            verdict(Method::GET, "/", HTTP_10, &[]),
            Verdict::Pass { host: None }
        );
    }

    #[test]
    fn long_targets_are_414() {
        let long = format!("/{}", "a".repeat(8192));
        assert_eq!(
            verdict(Method::GET, &long, Version::HTTP_11, &["a"]),
            Verdict::UriTooLong
        );
        assert_eq!(
            verdict(Method::GET, &long[..8192], Version::HTTP_11, &["a"]),
            Verdict::Pass { host: None }
        );
    }

    #[test]
    fn host_values() {
        for good in [
            "www.foobar.com",
            "www.foobar.com:8080",
            "127.10.1.10:8080",
            "[::1]",
            "[::1]:443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%2Db",
            "host:",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":8080",
            "a b",
            "a/b",
            "a@b",
            "a:80:80",
            "a:99999",
            "a:8o",
            "[::1",
            "[::1]x",
            "[not-an-ip]",
            "a%2",
            "a%zz",
            "exa\u{e9}mple",
            "a\\b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn request_target_forms() {
        const HTTP_11: Version = Version::HTTP_11;
        assert_eq!(
            verdict(
                Method::GET,
                "http://b.example:81/x",
                HTTP_11,
                &["a.example"]
            ),
            Verdict::Pass {
                host: Some(HeaderValue::from_static("b.example:81"))
            }
        );
        assert!(matches!(
            verdict(
                Method::GET,
                "http://u:p@b.example/",
                HTTP_11,
                &["b.example"]
            ),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::GET, "ftp://b.example/", HTTP_11, &["b"]),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::GET, "b.example:80", HTTP_11, &["b"]),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::CONNECT, "b.example:443", HTTP_11, &["b"]),
            Verdict::MethodNotAllowed(_)
        ));
        assert_eq!(
            verdict(Method::OPTIONS, "*", HTTP_11, &["b"]),
            Verdict::ServerOptions
        );
        assert!(matches!(
            verdict(Method::GET, "*", HTTP_11, &["b"]),
            Verdict::BadRequest(_)
        ));
        assert!(matches!(
            verdict(Method::TRACE, "/", HTTP_11, &["b"]),
            Verdict::MethodNotAllowed(_)
        ));
    }
}
