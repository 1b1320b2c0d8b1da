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
    counts: std::sync::Arc<crate::AnswerCounts>,
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
    let counts = std::sync::Arc::new(crate::AnswerCounts::default());
    let c = counts.clone();
    tokio::spawn(async move { run(&design, udp, tcp, c, token).await.unwrap() });
    Running {
        addr,
        shutdown,
        counts,
    }
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
    // Counted by response code, for the monitoring agent.
    assert_eq!(dns.counts.snapshot(), [("refused".to_string(), 1)]);
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

/// Runs Debian's `dig` against the server with `args` and returns its header and OPT
/// lines (`+noall +comments`). `.ci/run` installs dig (bind9-dnsutils).
async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args([
            "+norec",
            "+noall",
            "+comments",
            "+answer",
            "+tries=1",
            "+time=3",
        ])
        .args(args)
        .output()
        .await
        .expect("dig runs (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(answer: &'a str, key: &str) -> Option<&'a str> {
    let start = answer.find(key)? + key.len();
    let rest = &answer[start..];
    Some(rest[..rest.find([',', '\n']).unwrap_or(rest.len())].trim())
}

/// What, dig's options, the status, OPT expected, the EDNS flags expected, an answer
/// expected.
type Case<'a> = (&'a str, &'a [&'a str], &'a str, bool, &'a str, bool);

/// Issue 8.3: the EDNS behaviour RFC 8906 section 8 expects of an authoritative server,
/// checked with dig as its authors do: plain DNS, EDNS version 0 and 1, unknown options
/// and flags, the DO bit (RFC 3225), buffer sizes, TCP, an unknown opcode and the
/// header's Z bit.
#[tokio::test]
async fn regression_edns_behaviour_with_dig() {
    let dns = start().await;
    let name = "www.foobar.com";
    let cases: &[Case] = &[
        ("plain DNS", &["+noedns"], "NOERROR", false, "", true),
        ("EDNS 0", &["+edns=0"], "NOERROR", true, "", true),
        (
            "EDNS 1 is BADVERS with version 0",
            &["+edns=1", "+noednsneg"],
            "BADVERS",
            true,
            "",
            false,
        ),
        (
            "unknown option ignored",
            &["+edns=0", "+ednsopt=100"],
            "NOERROR",
            true,
            "",
            true,
        ),
        (
            "unknown EDNS flag ignored, not echoed",
            &["+edns=0", "+ednsflags=0x80"],
            "NOERROR",
            true,
            "",
            true,
        ),
        (
            "EDNS 1 with unknown option and flag",
            &["+edns=1", "+noednsneg", "+ednsopt=100", "+ednsflags=0x80"],
            "BADVERS",
            true,
            "",
            false,
        ),
        ("DO bit copied", &["+dnssec"], "NOERROR", true, "do", true),
        (
            "DO bit copied in BADVERS",
            &["+dnssec", "+edns=1", "+noednsneg"],
            "BADVERS",
            true,
            "do",
            false,
        ),
        (
            "DO bit over TCP",
            &["+tcp", "+dnssec"],
            "NOERROR",
            true,
            "do",
            true,
        ),
        (
            "EDNS over TCP",
            &["+tcp", "+edns=0"],
            "NOERROR",
            true,
            "",
            true,
        ),
        ("small buffer", &["+bufsize=512"], "NOERROR", true, "", true),
        (
            "buffer below 512",
            &["+bufsize=100"],
            "NOERROR",
            true,
            "",
            true,
        ),
        (
            "unknown opcode with EDNS",
            &["+opcode=15"],
            "NOTIMP",
            true,
            "",
            false,
        ),
        (
            "unknown opcode without EDNS",
            &["+opcode=15", "+noedns"],
            "NOTIMP",
            false,
            "",
            false,
        ),
        ("Z bit ignored", &["+zflag"], "NOERROR", true, "", true),
    ];
    let mut failures = Vec::new();
    for (what, options, status, opt, flags, answered) in cases {
        let mut args = options.to_vec();
        args.push(name);
        let out = dig(dns.addr, &args).await;
        let got_status = field(&out, "status:").unwrap_or("(no answer)");
        let got_opt = out.contains("OPT PSEUDOSECTION");
        let got_flags = out
            .lines()
            .find(|l| l.starts_with("; EDNS:"))
            .and_then(|l| l.split_once("flags:"))
            .and_then(|(_, rest)| rest.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        let got_answer = out
            .lines()
            .any(|l| l.starts_with(name) && l.contains("\tA\t"));
        let advertised = out
            .lines()
            .find(|l| l.starts_with("; EDNS:"))
            .and_then(|l| field(l, "udp:"));
        let mut wrong = Vec::new();
        if got_status != *status {
            wrong.push(format!("status {got_status}, expected {status}"));
        }
        if got_opt != *opt {
            wrong.push(format!("OPT present: {got_opt}, expected {opt}"));
        }
        if got_flags != *flags {
            wrong.push(format!("EDNS flags {got_flags:?}, expected {flags:?}"));
        }
        if got_answer != *answered {
            wrong.push(format!("answer present: {got_answer}, expected {answered}"));
        }
        if *opt && advertised != Some("1232") {
            wrong.push(format!("advertised UDP size {advertised:?}, expected 1232"));
        }
        if out.contains("MBZ") {
            wrong.push("a must-be-zero bit was echoed".into());
        }
        if out.contains("OPT=100") {
            wrong.push("the unknown option was echoed".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{what} (dig {}): {}\n{out}",
                options.join(" "),
                wrong.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
