//! The MUST-level request rules of RFC 9112 (§2-§7) and RFC 9110 for a server and an
//! intermediary, checked with raw bytes at every HTTP front of the real distributed
//! design: the load balancer (lb1), a web server (server1:8080) and an app server
//! (server1:8000). A request a front refuses is never forwarded: the backends' access
//! logs are checked for the markers of refused requests sent to the load balancer.
//!
//! | rule (MUST) | where | test |
//! |---|---|---|
//! | 400 for an HTTP/1.1 request without Host | RFC 9112 §3.2 | `no_host` |
//! | 400 for more than one Host line | RFC 9112 §3.2 | `two_hosts`, `two_hosts_http_1_0` |
//! | 400 for an invalid Host value (empty, spaces, `/`, no host, bad port) | RFC 9112 §3.2, RFC 9110 §4.2.1 | `host_*` |
//! | HTTP/1.0 may omit Host | RFC 9112 §3.2 | `http_1_0_without_host` |
//! | accept the absolute-form; its authority replaces Host | RFC 9112 §3.2.2 | `absolute_form` (+ `request_rules::tests::request_target_forms`) |
//! | authority-form only with CONNECT; a reverse proxy does not tunnel | RFC 9112 §3.2.3 | `authority_form_get`, `connect` |
//! | asterisk-form only with OPTIONS, answered by the server | RFC 9112 §3.2.4 | `options_asterisk`, `asterisk_get` |
//! | 400 for whitespace between a field name and the colon | RFC 9112 §5.1 | `space_before_colon` |
//! | obs-fold is rejected (or replaced by SP) | RFC 9112 §5.2 | `obs_fold` |
//! | whitespace between the start line and the first field is rejected | RFC 9112 §2.2 | `space_after_request_line` |
//! | CR, LF or NUL in a field value rejected (or replaced by SP) | RFC 9110 §5.5, RFC 9112 §2.2 | `nul_in_value`, `bare_cr_in_value` |
//! | 400 and close for an invalid Content-Length | RFC 9112 §6.3 | `content_length_*` |
//! | 400 and close when chunked is not the final transfer coding | RFC 9112 §6.3 | `transfer_encoding_gzip` |
//! | Transfer-Encoding in HTTP/1.0: framing faulty | RFC 9112 §6.1 | `transfer_encoding_http_1_0` |
//! | Content-Length with Transfer-Encoding: TE wins, CL removed before forwarding | RFC 9112 §6.3 | `load-balancer` test `ambiguous_or_broken_framing_is_never_forwarded_ambiguously` |
//! | parse chunked; reject bad or overflowing chunk sizes; ignore unknown chunk extensions | RFC 9112 §7.1 | `chunk_*` |
//! | a message shorter than its Content-Length is incomplete: no request | RFC 9112 §6.3 | `short_body` |
//! | close after a response to `Connection: close` | RFC 9112 §9.6 | every case (the client reads until the server closes) |
//! | remove the fields named in Connection, and Connection, before forwarding | RFC 9110 §7.6.1 | `web` test `proxy_sets_forwarding_headers_and_strips_hop_by_hop` |
//! | a gateway adds Via to requests it forwards | RFC 9110 §7.6.3 | the same test (both proxies call `net::http::forwarded_headers`) |
//! | Max-Forwards: 0 on OPTIONS is answered by the intermediary, else decremented | RFC 9110 §7.6.2 | `max_forwards_zero`, and the same web test |
//! | 405 carries Allow | RFC 9110 §15.5.6 | `app_405_allow`, `static_405_allow`, `trace` |
//! | send 100 Continue (or a final status) to an HTTP/1.1 `Expect: 100-continue` | RFC 9110 §10.1.1 | `expect_continue` |
//! | ignore `Expect: 100-continue` from HTTP/1.0 (no 1xx to an HTTP/1.0 client) | RFC 9110 §10.1.1, §15.2 | `expect_continue_http_1_0` |
//! | 414 for a target longer than the server parses; 4xx for oversized fields | RFC 9110 §4.1, §5.4 | `long_target`, `huge_header` |
//! | Date on 2xx-4xx responses from an origin with a clock | RFC 9110 §6.6.1 | `absolute_form` checks `date` |

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use webstack_test_support::Stack;

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// Sends raw bytes, reads until the server closes, and returns the whole answer.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    exchange_then(addr, bytes, false)
}

/// As `exchange`; with `half_close` the client shuts its sending side after the bytes, as
/// a client that dies mid-body does.
fn exchange_then(addr: SocketAddr, bytes: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status of the final (non-1xx) response in an answer.
fn final_status(answer: &str) -> u16 {
    answer
        .split("\r\n\r\n")
        .filter_map(|part| {
            part.strip_prefix("HTTP/1.1 ")
                .or_else(|| part.strip_prefix("HTTP/1.0 "))
        })
        .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
        .find(|s| *s >= 200)
        .unwrap_or(0)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let last = answer.split("\r\n\r\n").find(|p| {
        p.strip_prefix("HTTP/1.1 ")
            .or_else(|| p.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3)?.parse::<u16>().ok())
            .is_some_and(|status| status >= 200)
    })?;
    last.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

struct Front {
    name: &'static str,
    addr: SocketAddr,
    /// A path the front answers 200 to with GET.
    ok_path: &'static str,
}

const JSON: &str = r#"{"author":"rfc","message":"9112"}"#;

#[test]
fn http_request_rules_at_every_front() {
    let stack = Stack::up(BIN.as_ref(), "distributed");
    let fronts = [
        Front {
            name: "load balancer",
            addr: SocketAddr::new(stack.host(10), 8080),
            ok_path: "/",
        },
        Front {
            name: "web server",
            addr: SocketAddr::new(stack.host(11), 8080),
            ok_path: "/robots.txt",
        },
        Front {
            name: "app server",
            addr: SocketAddr::new(stack.host(11), 8000),
            ok_path: "/health",
        },
    ];
    let mut failures = Vec::new();
    let mut refused_at_lb = Vec::new();
    for front in &fronts {
        let ok = front.ok_path;
        let long = format!("/{}", "a".repeat(10_000));
        let huge = "x".repeat(40_000);
        let cases: Vec<(&str, String, u16)> = vec![
            ("no_host", "GET {ok}?no_host HTTP/1.1\r\nConnection: close\r\n\r\n".into(), 400),
            ("two_hosts", "GET {ok}?two_hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".into(), 400),
            ("two_hosts_http_1_0", "GET {ok}?two_hosts_10 HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n".into(), 400),
            ("host_empty", "GET {ok}?host_empty HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n".into(), 400),
            ("host_space", "GET {ok}?host_space HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".into(), 400),
            ("host_slash", "GET {ok}?host_slash HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n".into(), 400),
            ("host_port_only", "GET {ok}?host_port HTTP/1.1\r\nHost: :8080\r\nConnection: close\r\n\r\n".into(), 400),
            ("host_bad_port", "GET {ok}?host_bad_port HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n".into(), 400),
            ("http_1_0_without_host", "GET {ok} HTTP/1.0\r\n\r\n".into(), 200),
            ("absolute_form", "GET http://www.foobar.com{ok} HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n".into(), 200),
            ("absolute_form_userinfo", "GET http://u:p@www.foobar.com{ok}?userinfo HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 400),
            ("authority_form_get", "GET www.foobar.com:80 HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 400),
            ("connect", "CONNECT www.foobar.com:443 HTTP/1.1\r\nHost: www.foobar.com:443\r\nConnection: close\r\n\r\n".into(), 405),
            ("options_asterisk", "OPTIONS * HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 200),
            ("asterisk_get", "GET * HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 400),
            ("trace", "TRACE {ok}?trace HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 405),
            ("space_before_colon", "GET {ok}?space_colon HTTP/1.1\r\nHost : www.foobar.com\r\nConnection: close\r\n\r\n".into(), 400),
            ("obs_fold", "GET {ok}?obs_fold HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n".into(), 400),
            ("space_after_request_line", "GET {ok}?space_line HTTP/1.1\r\n X-A: a\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 400),
            ("nul_in_value", "GET {ok}?nul HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\0b\r\nConnection: close\r\n\r\n".into(), 400),
            ("bare_cr_in_value", "GET {ok}?bare_cr HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\rb\r\nConnection: close\r\n\r\n".into(), 400),
            ("content_length_invalid", "POST /api/messages?cl_invalid HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 1x\r\nConnection: close\r\n\r\n{}".into(), 400),
            ("content_length_conflict", "POST /api/messages?cl_conflict HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}".into(), 400),
            ("transfer_encoding_gzip", "POST /api/messages?te_gzip HTTP/1.1\r\nHost: www.foobar.com\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n0\r\n\r\n".into(), 400),
            ("transfer_encoding_http_1_0", "POST /api/messages?te_10 HTTP/1.0\r\nHost: www.foobar.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
            ("chunk_size_invalid", "POST /api/messages?chunk_invalid HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".into(), 400),
            ("chunk_size_overflow", "POST /api/messages?chunk_overflow HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nfffffffffffffffffffff\r\n{}\r\n0\r\n\r\n".into(), 400),
            ("chunk_extension_ignored", format!("POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x};rfc=9112\r\n{JSON}\r\n0\r\n\r\n", JSON.len()), 201),
            ("expect_continue", format!("POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{JSON}", JSON.len()), 201),
            ("expect_continue_http_1_0", format!("POST /api/messages HTTP/1.0\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{JSON}", JSON.len()), 201),
            ("app_405_allow", "DELETE /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".into(), 405),
            ("long_target", format!("GET {long} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n"), 414),
            ("huge_header", format!("GET {ok}?huge HTTP/1.1\r\nHost: www.foobar.com\r\nX-Huge: {huge}\r\nConnection: close\r\n\r\n"), 431),
        ];
        let mut cases = cases;
        if front.name != "app server" {
            cases.push(("max_forwards_zero", "OPTIONS /api/messages?max_forwards HTTP/1.1\r\nHost: www.foobar.com\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n".into(), 200));
        }
        if front.name == "web server" {
            cases.push(("static_405_allow", "POST /robots.txt HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), 405));
        }
        for (name, request, expected) in cases {
            let request = request.replace("{ok}", ok);
            let answer = exchange(front.addr, request.as_bytes());
            let status = final_status(&answer);
            let head: String = answer.lines().take(12).collect::<Vec<_>>().join(" | ");
            if status != expected {
                failures.push(format!(
                    "{} {name}: expected {expected}, got {status}: {head}",
                    front.name
                ));
                continue;
            }
            let check = |ok: bool, what: &str, failures: &mut Vec<String>| {
                if !ok {
                    failures.push(format!("{} {name}: {what}: {head}", front.name));
                }
            };
            match name {
                "connect" | "trace" | "options_asterisk" | "max_forwards_zero"
                | "app_405_allow" | "static_405_allow" => check(
                    header(&answer, "allow").is_some(),
                    "no Allow header",
                    &mut failures,
                ),
                "absolute_form" => check(
                    header(&answer, "date").is_some(),
                    "no Date header",
                    &mut failures,
                ),
                "expect_continue" => check(
                    answer.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
                    "no 100 Continue before the final response",
                    &mut failures,
                ),
                "expect_continue_http_1_0" => check(
                    !answer.contains(" 100 Continue"),
                    "a 1xx was sent to an HTTP/1.0 client",
                    &mut failures,
                ),
                _ => {}
            }
            if front.name == "load balancer" && (expected >= 400 || name == "max_forwards_zero") {
                if let Some(marker) = request
                    .split_whitespace()
                    .nth(1)
                    .and_then(|t| t.split_once('?'))
                {
                    refused_at_lb.push(marker.1.to_string());
                }
            }
        }
        // A body shorter than its Content-Length, then the client stops sending: the
        // message is incomplete and must not be processed (or forwarded).
        let short = "POST /api/messages?short_body HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"author\":";
        let answer = exchange_then(front.addr, short.as_bytes(), true);
        if (200..300).contains(&final_status(&answer)) {
            failures.push(format!(
                "{} short_body: an incomplete message was processed: {answer}",
                front.name
            ));
        }
        if front.name == "load balancer" {
            refused_at_lb.push("short_body".into());
            // Nothing the load balancer refused (or answered itself) reached a web server.
            for (server, host) in [("server1", 11), ("server2", 12)] {
                let log = stack
                    .state_dir()
                    .join(format!("stacks/{}/servers/{server}/access.log", stack.name));
                // The access log is written in batches: a request sent straight to the
                // web server after all the others marks when everything before it is in.
                let barrier = format!("GET /robots.txt?barrier-{server} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n");
                exchange(SocketAddr::new(stack.host(host), 8080), barrier.as_bytes());
                let text = webstack_test_support::eventually(
                    Duration::from_secs(10),
                    "the barrier request is in the access log",
                    || {
                        std::fs::read_to_string(&log)
                            .ok()
                            .filter(|t| t.contains(&format!("?barrier-{server} ")))
                    },
                );
                for marker in &refused_at_lb {
                    if text.lines().any(|l| l.contains(&format!("?{marker} "))) {
                        failures.push(format!(
                            "load balancer forwarded the refused request `{marker}` to {server}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule(s) broken:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
