//! The curriculum's first design, end to end with the real binary: DNS → web server →
//! app server → MariaDB, a database crash, and a clean `down`.

use std::net::SocketAddr;
use std::time::Duration;

use webstack_dns::{RecordType, ResponseCode, Transport};
use webstack_test_support::http::{get, request};
use webstack_test_support::{alive, eventually, listening_sockets_on, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

fn resolve(dns: SocketAddr, name: &str, transport: Transport) -> webstack_dns::Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(webstack_dns::query(
        dns,
        name,
        RecordType::A,
        transport,
        Duration::from_secs(5),
    ))
    .unwrap()
}

#[test]
fn simple_design_serves_the_site_survives_a_database_crash_and_stops_cleanly() {
    let stack = Stack::up(BIN.as_ref(), "simple");
    assert!(
        stack
            .up_output
            .contains("curl --resolve www.foobar.com:8080:"),
        "{}",
        stack.up_output
    );
    assert!(stack.up_output.contains("dig @"), "{}", stack.up_output);

    // DNS: the stack's own name server says where www.foobar.com is.
    let dns = stack.listen("dns", "dns");
    let answer = resolve(dns, "www.foobar.com.", Transport::Udp);
    assert_eq!(answer.code, ResponseCode::NoError);
    assert_eq!(answer.addresses, vec![stack.host(11)]);
    assert_eq!(
        resolve(dns, "www.foobar.com.", Transport::Tcp).addresses,
        vec![stack.host(11)]
    );
    assert_eq!(
        resolve(dns, "nothing.foobar.com.", Transport::Udp).code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        resolve(dns, "www.example.com.", Transport::Udp).code,
        ResponseCode::Refused
    );

    // HTTP to the address DNS gave, with the Host a browser would send.
    let site = SocketAddr::new(answer.addresses[0], 8080);
    let css = get(site, "www.foobar.com", "/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.header("etag").is_some());
    let home = get(site, "www.foobar.com", "/");
    assert_eq!(home.status, 200);
    assert_eq!(home.header("x-served-by"), Some("server1"));
    assert!(home.text().contains("www.foobar.com"));

    // The guestbook: a write through web → app → MariaDB, read back.
    let posted = request(
        site,
        "POST",
        "www.foobar.com",
        "/api/messages",
        &[("Content-Type", "application/json")],
        br#"{"author":"ada","message":"survive the crash"}"#,
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    assert_eq!(posted.header("x-database"), Some("server1"));
    let list = get(site, "www.foobar.com", "/api/messages");
    assert!(list.text().contains("survive the crash"), "{}", list.text());

    // kill -9 the database server; the node restarts it, InnoDB recovers, nothing is lost.
    let mariadbd = stack.component("server1", "database")["child_pid"]
        .as_u64()
        .expect("the database reports its pid") as u32;
    // SAFETY: kill(2) on the pid the stack reported for its mariadbd.
    unsafe { libc::kill(mariadbd as i32, libc::SIGKILL) };
    eventually(
        Duration::from_secs(10),
        "the killed mariadbd is gone",
        || (!alive(mariadbd)).then_some(()),
    );
    let restarted = eventually(
        Duration::from_secs(90),
        "the database is restarted and healthy",
        || {
            let c = stack.component("server1", "database");
            let pid = c["child_pid"].as_u64()? as u32;
            (pid != mariadbd && c["health"]["healthy"] == true).then_some(pid)
        },
    );
    let after = eventually(
        Duration::from_secs(30),
        "the guestbook answers again",
        || {
            let r = get(site, "www.foobar.com", "/api/messages");
            (r.status == 200).then_some(r)
        },
    );
    assert!(
        after.text().contains("survive the crash"),
        "the message was lost: {}",
        after.text()
    );

    // down: no process and no listening socket is left.
    let pids = stack.recorded_pids();
    assert!(pids.contains(&restarted));
    stack.down();
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived `webstack down`");
    }
    for host in [stack.host(2), stack.host(11)] {
        assert_eq!(
            listening_sockets_on(host),
            vec![],
            "sockets still listen on {host}"
        );
    }
    let status = stack.run(&["status"]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("no stack is running"));
}
