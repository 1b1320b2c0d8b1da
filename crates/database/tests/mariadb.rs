//! A real MariaDB server under webstack's management: first start, the app user's grant,
//! a clean stop. Needs MariaDB installed (`.ci/run` installs it).

use std::sync::Mutex;
use std::time::Duration;

use mysql_async::prelude::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webstack_database::*;

#[derive(Default)]
struct Events {
    pid: Mutex<Option<u32>>,
    ready: Notify,
}

impl DatabaseEvents for Events {
    fn started(&self, pid: u32) {
        *self.pid.lock().unwrap() = Some(pid);
    }
    fn ready(&self) {
        self.ready.notify_one();
    }
    fn stopped(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_grants_the_app_and_stop_ends_mariadbd() {
    let dir = tempfile::tempdir().unwrap();
    let listener = webstack_net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().port();
    let config = DatabaseConfig {
        server_name: "db-test".into(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        dir: dir.path().join("database"),
        // The shared cache, so a machine without MariaDB downloads it once for all tests.
        cache_dir: default_cache_dir(),
        app_user: "foobar".into(),
        app_password: "s3cret'quote".into(),
        app_database: "foobar".into(),
        app_hosts: vec!["127.0.0.1".parse().unwrap()],
        replication: None,
        // Small enough that the start-up messages alone pass it.
        log_rotation: webstack_logs::RotationPolicy {
            max_bytes: 1024,
            keep: 2,
        },
    };
    let events = std::sync::Arc::new(Events::default());
    let shutdown = CancellationToken::new();
    let runner = {
        let (config, shutdown, events) = (config.clone(), shutdown.clone(), events.clone());
        tokio::spawn(async move { run(config, listener, shutdown, &*events).await })
    };
    tokio::time::timeout(Duration::from_secs(120), events.ready.notified())
        .await
        .expect("database ready within the deadline");

    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("foobar"))
        .pass(Some("s3cret'quote"))
        .db_name(Some("foobar"));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("the app user connects from its granted address");
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(2));
    let denied = conn.query_drop("CREATE DATABASE other").await;
    assert!(denied.is_err(), "the app user must not create databases");
    conn.disconnect().await.unwrap();

    let wrong = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("foobar"))
        .pass(Some("wrong"));
    assert!(mysql_async::Conn::new(wrong).await.is_err());

    // mariadbd itself has no TCP port: the connections above came through the front,
    // and the grant matched the client's address from its PROXY header.
    let config_text = std::fs::read_to_string(config.config_file()).unwrap();
    assert!(config_text.contains("skip-networking\n"), "{config_text}");

    // Issue 8.4: the error log passed its 1 KiB limit at start-up, so the node renames it
    // aside and mariadbd reopens a new one on FLUSH ERROR LOGS.
    let rotated = webstack_logs::rotated_path(&config.error_log(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(rotated.exists() && config.error_log().exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the error log was not rotated and reopened within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = std::fs::read_to_string(&rotated).unwrap();
    assert!(kept.contains("ready for connections"), "{kept}");

    let pid = events.pid.lock().unwrap().unwrap();
    shutdown.cancel();
    runner.await.unwrap().unwrap();
    assert!(
        !webstack_net::process::alive(pid),
        "mariadbd {pid} still runs after stop"
    );
}
