//! The foobar application on a loopback port with its SQLite backend (the MySQL backend is
//! exercised end to end against real MariaDB in the `webstack` crate's tests).

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use webstack_net::http::HttpLimits;
use webstack_net::Listener;
use webstack_test_support::http::{get, request};

use crate::*;

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(async { Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap() });
    let addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    let config = BuiltinConfig {
        server_name: "app-test".into(),
        version: "7".into(),
        storage: StorageConfig::Sqlite {
            path: dir.path().join("foobar.db"),
        },
        limits: HttpLimits::default(),
        metrics: None,
    };
    rt.spawn(run_builtin(config, listener, shutdown.clone()));
    Running {
        addr,
        shutdown,
        _dir: dir,
        _rt: rt,
    }
}

#[test]
fn guestbook_round_trip_names_the_server() {
    let app = start();
    let posted = request(
        app.addr,
        "POST",
        "h",
        "/api/messages",
        &[("Content-Type", "application/json")],
        br#"{"author":"ada","message":"hello <world>"}"#,
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    assert_eq!(posted.header("x-served-by"), Some("app-test"));
    assert_eq!(posted.header("x-app-version"), Some("7"));
    let saved: serde_json::Value = serde_json::from_slice(&posted.body).unwrap();
    assert_eq!(saved["author"], "ada");

    let list = get(app.addr, "h", "/api/messages");
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["messages"][0]["message"], "hello <world>");
    assert_eq!(v["messages"][0]["served_by"], "app-test");

    let home = get(app.addr, "h", "/");
    assert!(
        home.text().contains("hello &lt;world&gt;"),
        "the home page must escape messages"
    );
}

#[test]
fn form_post_redirects_home() {
    let app = start();
    let r = request(
        app.addr,
        "POST",
        "h",
        "/api/messages",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"author=bo&message=hi+there%21",
    );
    assert_eq!(r.status, 303);
    assert!(get(app.addr, "h", "/").text().contains("hi there!"));
}

#[test]
fn bad_messages_get_clear_errors_and_nothing_is_saved() {
    let app = start();
    for (ctype, body, status) in [
        ("application/json", &b"{not json"[..], 400),
        ("application/json", br#"{"message":"   "}"#, 400),
        ("application/json", br#"{"author":"x"}"#, 400),
        ("text/plain", b"hello", 415),
    ] {
        let r = request(
            app.addr,
            "POST",
            "h",
            "/api/messages",
            &[("Content-Type", ctype)],
            body,
        );
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.text().contains("\"error\""), "{}", r.text());
    }
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(1001));
    assert_eq!(
        request(
            app.addr,
            "POST",
            "h",
            "/api/messages",
            &[("Content-Type", "application/json")],
            long.as_bytes()
        )
        .status,
        400
    );
    let v: serde_json::Value =
        serde_json::from_slice(&get(app.addr, "h", "/api/messages").body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 0);
}

#[test]
fn health_reports_the_database() {
    let app = start();
    let r = get(app.addr, "h", "/health");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["database_reachable"], true);
    assert_eq!(get(app.addr, "h", "/nope").status, 404);
}
