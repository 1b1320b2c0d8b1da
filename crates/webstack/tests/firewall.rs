//! The firewall matrix on the secured design (its monitoring blocks left out until the
//! agent exists): from every server's address, from an address outside the design and
//! from the operator's console, a connection to every TCP port that any process of every
//! server listens on (read from the kernel's socket table, not from the design) is
//! accepted exactly where the policy says, refused everywhere else, and each server's
//! refusal counter agrees. Also: every exported nftables ruleset of every shipped design
//! passes `nft -c` in a fresh network namespace.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use webstack_test_support::{eventually, listening_sockets_on, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

fn secured_without_monitoring(dir: &Path) -> PathBuf {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/secured.toml"
    ))
    .unwrap();
    let text: String = source
        .split("\n[")
        .filter(|block| !block.contains(".monitoring]"))
        .collect::<Vec<_>>()
        .join("\n[");
    let text = text
        .lines()
        .filter(|l| !l.starts_with("port = 9100"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("[servers.server1.firewall]") && !text.contains("monitoring]"));
    let path = dir.join("secured-firewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Connects from `from` to `to`: `true` if the server keeps the connection (it waits for
/// a request, or greets like MySQL), `false` if it closes it at once.
fn accepted(from: IpAddr, to: SocketAddr) -> bool {
    let socket = socket2_connect(from, to);
    let Some(mut stream) = socket else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            true
        }
        Err(_) => false,
    }
}

/// A TCP connection from a chosen loopback address (std cannot bind before connect).
fn socket2_connect(from: IpAddr, to: SocketAddr) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let IpAddr::V4(from) = from else { return None };
    let SocketAddr::V4(to) = to else { return None };
    // SAFETY: a fresh socket, bound and connected with plain sockaddr_in values; the fd
    // is handed to TcpStream, which owns and closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let local = addr(from, 0);
        let remote = addr(*to.ip(), to.port());
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let stream = TcpStream::from_raw_fd(fd);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0
            || libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0
        {
            return None;
        }
        Some(stream)
    }
}

#[test]
fn firewall_matrix_on_the_secured_design() {
    let dir = tempfile::tempdir().unwrap();
    let design = secured_without_monitoring(dir.path());
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let host = |n: u8| stack.host(n);
    let (lb1, server1, server2) = (host(10), host(11), host(12));
    let outside = host(200);
    let operator = host(254);
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    let sources = [
        ("lb1", lb1),
        ("server1", server1),
        ("server2", server2),
        ("outside", outside),
        ("operator", operator),
        ("127.0.0.1", localhost),
    ];
    // What the policy must allow, written out by hand for this design (port → sources).
    let everyone = [
        "lb1",
        "server1",
        "server2",
        "outside",
        "operator",
        "127.0.0.1",
    ];
    let expected: BTreeMap<(IpAddr, u16), Vec<&str>> = [
        ((lb1, 8080), everyone.to_vec()),
        ((lb1, 8443), everyone.to_vec()),
        ((lb1, 8404), vec!["operator"]),
        ((server1, 8080), vec!["lb1", "operator"]),
        ((server1, 8000), vec!["server1", "operator"]),
        ((server1, 3306), vec!["server1", "server2", "operator"]),
        ((server1, 13307), vec!["127.0.0.1", "operator"]),
        ((server2, 8080), vec!["lb1", "operator"]),
        ((server2, 8000), vec!["server2", "operator"]),
        ((server2, 3306), vec!["server1", "server2", "operator"]),
        ((server2, 13306), vec!["127.0.0.1", "operator"]),
    ]
    .into_iter()
    .collect();

    // Every TCP port the kernel says a process of a server listens on.
    let mut listening: Vec<SocketAddr> = [lb1, server1, server2]
        .iter()
        .flat_map(|ip| listening_sockets_on(*ip))
        .collect();
    listening.sort();
    listening.dedup();
    let listed: Vec<SocketAddr> = expected
        .keys()
        .map(|(ip, port)| SocketAddr::new(*ip, *port))
        .collect();
    assert_eq!(
        listening, listed,
        "the servers listen on ports the matrix does not know"
    );

    let probes: Vec<(SocketAddr, &str, IpAddr)> = listening
        .iter()
        .flat_map(|to| sources.iter().map(move |(name, from)| (*to, *name, *from)))
        .collect();
    let results: Vec<((SocketAddr, &str), bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(to, name, from)| scope.spawn(move || ((*to, *name), accepted(*from, *to))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut wrong = Vec::new();
    let mut refused_per_server: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for ((to, name), got) in &results {
        let want = expected[&(to.ip(), to.port())].contains(name);
        if *got != want {
            wrong.push(format!(
                "{name} → {to}: {} (expected {})",
                verdict(*got),
                verdict(want)
            ));
        }
        if !want {
            *refused_per_server.entry(to.ip()).or_default() += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "the firewall disagrees with the policy:\n{}",
        wrong.join("\n")
    );

    // The name server (no firewall of its own: it is the zone's public face) answers
    // every source over UDP.
    for (name, from) in &sources {
        let out = Command::new("dig")
            .args([
                "-b",
                &from.to_string(),
                &format!("@{}", host(2)),
                "-p",
                "5353",
            ])
            .args(["+short", "+tries=1", "+time=3", "www.foobar.com"])
            .output()
            .expect("dig runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            lb1.to_string(),
            "dig from {name}"
        );
    }

    // Each server's default-deny counter (the last one) counted exactly our refusals.
    for (server, ip) in [("lb1", lb1), ("server1", server1), ("server2", server2)] {
        let want = refused_per_server.get(&ip).copied().unwrap_or(0);
        eventually(
            Duration::from_secs(10),
            &format!("{server}'s refusal counter reaches {want}"),
            || {
                let status: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(
                        stack
                            .state_dir()
                            .join(format!("stacks/{}/servers/{server}/node.json", stack.name)),
                    )
                    .ok()?,
                )
                .ok()?;
                let counters = status["firewall"].as_array()?;
                (counters.last()?.as_u64()? == want).then_some(())
            },
        );
    }
    let show = stack.ok(&["firewall", "show", "server1"]);
    assert!(
        show.contains("balances over server1") && show.contains("connections]"),
        "{show}"
    );
    // The refusals are in the node's log, with the reason.
    let log = std::fs::read_to_string(
        stack
            .state_dir()
            .join(format!("stacks/{}/logs/server1.log", stack.name)),
    )
    .unwrap();
    // (Refusals are logged at most once a second per rule, with the count of the rest.)
    assert!(
        log.contains("firewall: refused ")
            && log.contains(&format!("→ {server1}:"))
            && log.contains("no rule allows it"),
        "{log}"
    );

    // The site works through the policy: HTTPS through lb1, writes reach the database.
    let ca = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.crt", stack.name));
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("www.foobar.com:8443:{lb1}")])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"author":"fw","message":"through the policy"}"#,
        ])
        .arg("https://www.foobar.com:8443/api/messages")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "201",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = stack.ok(&["db", "status"]);
    assert!(db.contains("replica"), "{db}");
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "accepted"
    } else {
        "refused"
    }
}

/// CI runs as root with Debian's nftables: every exported ruleset of every shipped design
/// must pass `nft -c` in a network namespace of its own.
#[test]
fn exported_rulesets_pass_nft_check() {
    // SAFETY: geteuid(2) has no effects.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "CI must run this as root");
        eprintln!("exported_rulesets_pass_nft_check needs root (CAP_NET_ADMIN in a new namespace); CI runs it");
        return;
    }
    let mut checked = 0;
    for design in ["simple", "distributed", "secured", "scaled"] {
        let loaded = webstack_topology::load(design).unwrap().design;
        for server in loaded.servers.iter().filter(|s| s.firewall.is_some()) {
            let out = Command::new(BIN)
                .args(["firewall", "export", &server.name, "--design", design])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &out.stdout).unwrap();
            let check = Command::new("unshare")
                .args(["-n", "nft", "-c", "-f"])
                .arg(file.path())
                .output()
                .expect("unshare and nft run (apt-get install nftables)");
            assert!(
                check.status.success(),
                "{design}/{}: {}\n{}",
                server.name,
                String::from_utf8_lossy(&check.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} rulesets checked");
}
