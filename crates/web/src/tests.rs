//! The web server on a loopback port with a real root folder: static files, path safety
//! and the reverse proxy against a real HTTP upstream.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper::{Response, StatusCode};
use tokio_util::sync::CancellationToken;
use webstack_net::http::{full, serve, HttpLimits};
use webstack_net::Listener;
use webstack_test_support::http::{get, raw_request, request};

use crate::*;

/// A server on its own runtime, stopped when dropped.
struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start_web(
    root: &Path,
    upstreams: Vec<SocketAddr>,
    log: Option<&Path>,
    proxy: ProxySettings,
) -> Running {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(async { Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap() });
    let addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    let config = WebConfig {
        server_name: "web-test".into(),
        local_address: "127.0.0.1".parse().unwrap(),
        root: root.to_path_buf(),
        upstreams,
        access_log: log.map(Path::to_path_buf),
        log_rotation: webstack_logs::RotationPolicy::DEFAULT,
        metrics: None,
        limits: HttpLimits::default(),
        proxy,
    };
    rt.spawn(run(config, listener, None, shutdown.clone()));
    Running {
        addr,
        shutdown,
        _rt: rt,
    }
}

/// An upstream that answers with the request's headers as its body, or never answers for
/// `/hang`.
fn start_echo_upstream() -> Running {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(async { Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap() });
    let addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    rt.spawn(serve(
        listener,
        HttpLimits::default(),
        shutdown.clone(),
        |req, _peer| async move {
            if req.uri().path() == "/hang" {
                std::future::pending::<()>().await;
            }
            let mut body = format!("{} {}\n", req.method(), req.uri());
            for (n, v) in req.headers() {
                body.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("?")));
            }
            Response::builder()
                .header("connection", "keep-alive, x-secret")
                .header("x-secret", "hop")
                .body(full(body))
                .unwrap()
        },
    ));
    Running {
        addr,
        shutdown,
        _rt: rt,
    }
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A root with files, and a canary outside the root that must never be served.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(root.join("static")).unwrap();
        std::fs::write(
            root.join("static/style.css"),
            "body { color: black; }\n".repeat(40),
        )
        .unwrap();
        std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
        std::fs::write(dir.path().join("canary.txt"), "CANARY-OUTSIDE-ROOT\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("canary.txt"), root.join("link-out.txt"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dir-out")).unwrap();
        Site { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("public")
    }
}

#[test]
fn static_file_with_type_validators_and_304() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let r = get(web.addr, "www.foobar.com", "/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello, world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let etag = r.header("etag").unwrap().to_string();
    let last_modified = r.header("last-modified").unwrap().to_string();
    assert!(r.header("x-request-id").is_some());

    let again = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let since = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("If-Modified-Since", &last_modified)],
        b"",
    );
    assert_eq!(since.status, 304);
    let head = request(web.addr, "HEAD", "h", "/hello.txt", &[], b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(get(web.addr, "h", "/docs/").text(), "<h1>docs</h1>\n");
}

#[test]
fn byte_ranges() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let r = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("Range", "bytes=0-4")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("content-range"), Some("bytes 0-4/13"));
    let tail = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("Range", "bytes=-6")],
        b"",
    );
    assert_eq!(tail.text(), "world\n");
    let bad = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("Range", "bytes=100-")],
        b"",
    );
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */13"));
}

#[test]
fn gzip_for_text_when_asked() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let r = request(
        web.addr,
        "GET",
        "h",
        "/static/style.css",
        &[("Accept-Encoding", "gzip, br")],
        b"",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.header("etag").unwrap().starts_with("W/"));
    let mut plain = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, "body { color: black; }\n".repeat(40));
    let refused = request(
        web.addr,
        "GET",
        "h",
        "/static/style.css",
        &[("Accept-Encoding", "gzip;q=0")],
        b"",
    );
    assert_eq!(refused.header("content-encoding"), None);
}

#[test]
fn path_traversal_never_serves_the_canary() {
    let site = Site::new();
    let upstream = start_echo_upstream();
    let web = start_web(
        &site.root(),
        vec![upstream.addr],
        None,
        ProxySettings::default(),
    );
    let attempts: &[&[u8]] = &[
        b"GET /../canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /static/../../canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /%2e%2e/canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /%2E%2E%2Fcanary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /static/%2e%2e/%2e%2e/canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /..%5ccanary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /..\\canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /canary.txt%00.html HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /%c0%ae%c0%ae/canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /link-out.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /dir-out/canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET http://h/../canary.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /.env HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ];
    for raw in attempts {
        let r = raw_request(web.addr, raw);
        let shown = String::from_utf8_lossy(raw);
        assert!(
            !r.text().contains("CANARY-OUTSIDE-ROOT") && !r.text().contains("SECRET=1"),
            "{shown} served a file outside the root"
        );
        // Refused outright, or (for names that are simply not files under the root) handed
        // to the app, which sees a path with no way out either.
        assert!(
            r.status == 400 || r.text().starts_with("GET /"),
            "{shown}: {} {}",
            r.status,
            r.text()
        );
    }
}

#[test]
fn proxy_sets_forwarding_headers_and_strips_hop_by_hop() {
    let site = Site::new();
    let upstream = start_echo_upstream();
    let web = start_web(
        &site.root(),
        vec![upstream.addr],
        None,
        ProxySettings::default(),
    );
    let r = request(
        web.addr,
        "GET",
        "www.foobar.com",
        "/api/x?y=1",
        &[
            ("X-Request-Id", "abc-123"),
            ("X-Forwarded-For", "10.9.9.9"),
            ("Connection", "close, x-drop"),
            ("X-Drop", "1"),
            ("Via", "1.0 corporate-proxy"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let echoed = r.text();
    // RFC 9110 7.6.3: a gateway appends itself to Via.
    assert!(
        echoed.contains("via: 1.0 corporate-proxy, 1.1 web-test"),
        "{echoed}"
    );
    assert!(echoed.starts_with("GET /api/x?y=1"), "{echoed}");
    assert!(
        echoed.contains("x-forwarded-for: 10.9.9.9, 127.0.0.1"),
        "{echoed}"
    );
    assert!(echoed.contains("x-forwarded-proto: http"), "{echoed}");
    assert!(
        echoed.contains("x-forwarded-host: www.foobar.com"),
        "{echoed}"
    );
    assert!(echoed.contains("x-request-id: abc-123"), "{echoed}");
    assert!(!echoed.contains("x-drop"), "{echoed}");
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        r.header("x-secret"),
        None,
        "a header the upstream listed in Connection was forwarded"
    );

    let fresh = get(web.addr, "h", "/other");
    assert_eq!(fresh.header("x-request-id").map(str::len), Some(32));

    // RFC 9110 7.6.2: an OPTIONS request's Max-Forwards is decremented on the way, and one
    // that arrives with 0 is answered here and goes no further.
    let r = request(
        web.addr,
        "OPTIONS",
        "h",
        "/api/x",
        &[("Max-Forwards", "3")],
        b"",
    );
    assert!(r.text().contains("max-forwards: 2"), "{}", r.text());
    let r = request(
        web.addr,
        "OPTIONS",
        "h",
        "/api/x",
        &[("Max-Forwards", "0")],
        b"",
    );
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    assert!(r.header("allow").is_some());
}

#[test]
fn post_body_reaches_the_upstream() {
    let site = Site::new();
    let upstream = start_echo_upstream();
    let web = start_web(
        &site.root(),
        vec![upstream.addr],
        None,
        ProxySettings::default(),
    );
    let r = request(
        web.addr,
        "POST",
        "h",
        "/api/messages",
        &[("Content-Type", "application/json")],
        b"{\"a\":1}",
    );
    assert!(r.text().contains("content-length: 7"), "{}", r.text());
    let big = vec![b'x'; 2 * 1024 * 1024];
    let too_big = request(web.addr, "POST", "h", "/api/messages", &[], &big);
    assert_eq!(too_big.status, 413);
}

#[test]
fn dead_upstream_is_a_readable_502_and_another_upstream_takes_over() {
    let site = Site::new();
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let only_dead = start_web(&site.root(), vec![dead], None, ProxySettings::default());
    let r = get(only_dead.addr, "h", "/api/messages");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("could not reach any app server")
            && r.text().contains("retrying later is safe"),
        "{}",
        r.text()
    );

    let upstream = start_echo_upstream();
    let mixed = start_web(
        &site.root(),
        vec![dead, upstream.addr],
        None,
        ProxySettings::default(),
    );
    for _ in 0..4 {
        assert_eq!(get(mixed.addr, "h", "/api/messages").status, 200);
    }
}

#[test]
fn slow_upstream_is_a_504() {
    let site = Site::new();
    let upstream = start_echo_upstream();
    let settings = ProxySettings {
        response_timeout: Duration::from_millis(300),
        ..ProxySettings::default()
    };
    let web = start_web(&site.root(), vec![upstream.addr], None, settings);
    let r = get(web.addr, "h", "/hang");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("did not answer"), "{}", r.text());
}

#[test]
fn oversized_headers_are_refused() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let huge = "a".repeat(64 * 1024);
    let r = request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[("X-Huge", &huge)],
        b"",
    );
    assert_eq!(
        r.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.as_u16()
    );
}

#[test]
fn access_log_is_combined_format() {
    let site = Site::new();
    let log = site.dir.path().join("access.log");
    let web = start_web(&site.root(), vec![], Some(&log), ProxySettings::default());
    request(
        web.addr,
        "GET",
        "h",
        "/hello.txt",
        &[
            ("User-Agent", "curl/8.0"),
            ("Referer", "http://x/"),
            ("X-Request-Id", "rid-1"),
        ],
        b"",
    );
    // Lines are written in batches (every 200 ms at the latest).
    let text =
        webstack_test_support::eventually(Duration::from_secs(5), "the line is written", || {
            std::fs::read_to_string(&log).ok().filter(|t| !t.is_empty())
        });
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /hello.txt HTTP/1.1\" 200 13 \"http://x/\" \"curl/8.0\" \"rid-1\" "),
        "{line}"
    );
}

#[test]
fn health_path_is_answered_by_the_web_server_itself() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let r = get(web.addr, "h", HEALTH_PATH);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok: web server on web-test\n");
}

#[test]
fn a_changed_file_is_served_fresh_within_the_cache_validity() {
    let site = Site::new();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    assert_eq!(get(web.addr, "h", "/hello.txt").text(), "hello, world\n");
    // A different length, so the change shows even within one second of mtime.
    std::fs::write(site.root().join("hello.txt"), "hello again, world\n").unwrap();
    webstack_test_support::eventually(Duration::from_secs(5), "the new content is served", || {
        (get(web.addr, "h", "/hello.txt").text() == "hello again, world\n").then_some(())
    });
    // A file that appears is found once the cached miss expires.
    std::fs::write(site.root().join("new.txt"), "new\n").unwrap();
    webstack_test_support::eventually(Duration::from_secs(5), "the new file is served", || {
        (get(web.addr, "h", "/new.txt").status == 200).then_some(())
    });
}

#[test]
fn a_large_file_is_streamed_whole_and_ranges_of_it_work() {
    let site = Site::new();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.root().join("big.bin"), &big).unwrap();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let r = get(web.addr, "h", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("600000"));
    assert!(r.body == big, "the streamed body differs from the file");
    let part = request(
        web.addr,
        "GET",
        "h",
        "/big.bin",
        &[("Range", "bytes=500000-500009")],
        b"",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, big[500_000..500_010]);
}

/// Reads one HTTP/1.1 response with a Content-Length body (none after HEAD) off `stream`,
/// leaving whatever follows in `buf` for the next.
fn read_response(
    stream: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let body_len = if head_only { 0 } else { len };
            while buf.len() < end + 4 + body_len {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + body_len].to_vec();
            buf.drain(..end + 4 + body_len);
            return (head, body);
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn large_cached_files_leave_by_sendfile_on_keep_alive_and_pipelined_requests() {
    use std::io::Write;
    let site = Site::new();
    let path = site.root().join("mid.bin");
    let first: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &first).unwrap();
    let web = start_web(&site.root(), vec![], None, ProxySettings::default());
    let mut stream = std::net::TcpStream::connect(web.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    // GET, HEAD, a range and GET again, pipelined on one connection.
    stream
        .write_all(
            b"GET /mid.bin HTTP/1.1\r\nHost: h\r\n\r\n\
              HEAD /mid.bin HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=70000-70099\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .unwrap();
    let (head, body) = read_response(&mut stream, &mut buf, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body == first, "the body differs from the file");
    let (head, body) = read_response(&mut stream, &mut buf, true);
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("content-length: 100000"),
        "{head}"
    );
    assert!(body.is_empty());
    let (head, body) = read_response(&mut stream, &mut buf, false);
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert_eq!(body, first[70_000..70_100]);
    let (_, body) = read_response(&mut stream, &mut buf, false);
    assert!(body == first, "the second body differs from the file");

    // The file is rewritten in place with the same length and mtime, so the cache keeps
    // the bytes it read. The body still comes from the file, as it does from nginx with
    // sendfile on: proof that it went by sendfile and not from the copy in memory.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let second: Vec<u8> = first.iter().map(|b| b ^ 0xff).collect();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    (&f).write_all(&second).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    stream
        .write_all(b"GET /mid.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let (_, body) = read_response(&mut stream, &mut buf, false);
    assert!(
        body == second,
        "the body did not come from the file by sendfile"
    );
}
