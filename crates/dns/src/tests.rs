//! The DNS server answering real queries over UDP and TCP on a loopback port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::*;

const DESIGN: &str = r#"
[stack]
name = "t"
domain = "foobar.com"
[dns]
address = "127.0.0.1"
records = { www = ["s1"], "@" = ["s1"], api = ["127.0.0.99"] }
[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { storage = "sqlite" }
"#;

/// A running DNS server on port 0 and its shutdown handle; stops when dropped.
struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Running {
    let design =
        webstack_topology::parse_design(DESIGN, "t.toml", std::path::Path::new(".")).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { run(&design, udp, tcp, token).await.unwrap() });
    Running { addr, shutdown }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_record_of_www_over_udp_and_tcp() {
    let dns = start().await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let a = query(dns.addr, "www.foobar.com.", RecordType::A, transport, T)
            .await
            .unwrap();
        assert_eq!(a.code, ResponseCode::NoError, "{transport:?}");
        assert!(a.authoritative);
        assert_eq!(
            a.addresses,
            vec!["127.10.0.11".parse::<std::net::IpAddr>().unwrap()]
        );
    }
}

#[tokio::test]
async fn apex_address_and_literal_target() {
    let dns = start().await;
    let apex = query(dns.addr, "foobar.com.", RecordType::A, Transport::Udp, T)
        .await
        .unwrap();
    assert_eq!(
        apex.addresses,
        vec!["127.10.0.11".parse::<std::net::IpAddr>().unwrap()]
    );
    let api = query(
        dns.addr,
        "api.foobar.com.",
        RecordType::A,
        Transport::Udp,
        T,
    )
    .await
    .unwrap();
    assert_eq!(
        api.addresses,
        vec!["127.0.0.99".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[tokio::test]
async fn unknown_name_in_zone_is_nxdomain_with_soa() {
    let dns = start().await;
    let a = query(
        dns.addr,
        "nope.foobar.com.",
        RecordType::A,
        Transport::Udp,
        T,
    )
    .await
    .unwrap();
    assert_eq!(a.code, ResponseCode::NXDomain);
    assert!(
        a.authority_types.contains(&RecordType::SOA),
        "{:?}",
        a.authority_types
    );
}

#[tokio::test]
async fn soa_and_ns_of_the_zone() {
    let dns = start().await;
    let soa = query(dns.addr, "foobar.com.", RecordType::SOA, Transport::Tcp, T)
        .await
        .unwrap();
    assert_eq!(soa.code, ResponseCode::NoError);
    assert_eq!(soa.message.answers.len(), 1);
    let ns = query(dns.addr, "foobar.com.", RecordType::NS, Transport::Udp, T)
        .await
        .unwrap();
    assert_eq!(ns.message.answers[0].data.to_string(), "ns1.foobar.com.");
}

#[tokio::test]
async fn other_zones_are_refused() {
    let dns = start().await;
    let a = query(
        dns.addr,
        "www.example.org.",
        RecordType::A,
        Transport::Udp,
        T,
    )
    .await
    .unwrap();
    assert_eq!(a.code, ResponseCode::Refused);
}

#[tokio::test]
async fn garbage_datagram_does_not_stop_the_server() {
    let dns = start().await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01garbage", dns.addr).await.unwrap();
    let a = query(
        dns.addr,
        "www.foobar.com.",
        RecordType::A,
        Transport::Udp,
        T,
    )
    .await
    .unwrap();
    assert_eq!(a.code, ResponseCode::NoError);
}
