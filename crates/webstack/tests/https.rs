//! HTTPS on the secured design (its firewall and monitoring blocks left out until those
//! components exist): a real TLS handshake against the stack's CA with curl and openssl
//! as a user would, TLS 1.1 refused, only the intermediate suites, the 308 from the plain
//! port, HSTS, HTTP/2, a resumed session; and, with certificate files named in the design,
//! a replaced certificate served to new connections while an open keep-alive connection
//! goes on undisturbed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use webstack_test_support::{eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");
/// The load balancer's `tls` line in designs/secured.toml.
const SHIPPED_TLS: &str =
    "tls = { port = 8443, hsts_max_age = 31536000 }   # HTTPS; the plain port redirects (308)";

/// The secured design without its firewalls and monitoring (tests of their own cover
/// them), its load balancer's `tls` line replaced by `tls`.
fn secured_design(dir: &Path, tls: &str) -> PathBuf {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/secured.toml"
    ))
    .unwrap();
    let cut = source.find("[servers.lb1.firewall]").unwrap();
    let text = source[..cut].replace(SHIPPED_TLS, tls);
    assert!(text.contains(tls));
    let path = dir.join("secured-https.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the tool runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn https_with_the_stacks_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let design = secured_design(dir.path(), "tls = { port = 8443, hsts_max_age = 600 }");
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let ca = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.crt", stack.name));
    // The CA is kept in the state directory, its key readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let key = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.key", stack.name));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    let lb = stack.host(10);
    let resolve = format!("www.foobar.com:8443:{lb}");
    // `up` prints a curl line that works as printed.
    let printed = stack
        .up_output
        .lines()
        .find(|l| l.trim_start().starts_with("curl --cacert"))
        .unwrap_or_else(|| panic!("no curl --cacert line:\n{}", stack.up_output));
    let args: Vec<&str> = printed.split_whitespace().skip(1).collect();
    let (ok, out) = run(Command::new("curl").args(["-sS", "-i"]).args(&args));
    assert!(ok && out.starts_with("HTTP/2 200"), "{printed}\n{out}");
    assert!(
        out.contains("strict-transport-security: max-age=600"),
        "{out}"
    );

    // HTTP/2 serves the site, HTTP/1.1 too.
    let (ok, out) = run(Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http2",
            "--cacert",
        ])
        .arg(&ca)
        .args([
            "--resolve",
            &resolve,
            "https://www.foobar.com:8443/api/messages",
        ]));
    assert_eq!((ok, out.as_str()), (true, "2 200"));
    let (ok, out) = run(Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http1.1",
            "--cacert",
        ])
        .arg(&ca)
        .args(["--resolve", &resolve, "https://www.foobar.com:8443/"]));
    assert_eq!((ok, out.as_str()), (true, "1.1 200"));

    // The plain port redirects, with 308, to the same path over HTTPS; no HSTS over HTTP.
    let (ok, out) = run(Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--resolve",
            &format!("www.foobar.com:8080:{lb}"),
        ])
        .arg("http://www.foobar.com:8080/api/messages?x=1"));
    assert!(ok && out.starts_with("HTTP/1.1 308"), "{out}");
    assert!(
        out.contains("location: https://www.foobar.com:8443/api/messages?x=1"),
        "{out}"
    );
    assert!(!out.contains("strict-transport-security"), "{out}");

    // The handshake verifies against the stack's CA and not without it.
    let (ok, out) = run(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "--resolve",
        &resolve,
        "https://www.foobar.com:8443/",
    ]));
    assert!(!ok, "verified without the stack's CA: {out}");

    let s_client = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("{lb}:8443"),
            "-servername",
            "www.foobar.com",
            "-CAfile",
        ])
        .arg(&ca)
        .args(args)
        .stdin(std::process::Stdio::null());
        run(&mut cmd)
    };
    // TLS 1.1 and below are refused; 1.2 and 1.3 verify.
    let (ok, out) = s_client(&["-tls1_1"]);
    // The server refuses it (alert 40), not the client.
    assert!(
        !ok && out.contains("alert handshake failure"),
        "TLS 1.1: {out}"
    );
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, out) = s_client(&[version, "-brief"]);
        assert!(ok && out.contains("Verification: OK"), "{version}: {out}");
    }
    // Only the intermediate suites: CBC and RSA key exchange are refused, ECDHE with GCM
    // or ChaCha20 is taken.
    for weak in [
        "ECDHE-ECDSA-AES128-SHA",
        "AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
    ] {
        let (ok, out) = s_client(&["-tls1_2", "-cipher", weak, "-brief"]);
        assert!(
            !ok && out.contains("alert handshake failure"),
            "{weak}: {out}"
        );
    }
    for good in [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ] {
        let (ok, out) = s_client(&["-tls1_2", "-cipher", good, "-brief"]);
        assert!(ok && out.contains(good), "{good}: {out}");
    }
    // A resumed session: the ticket of the first handshake works for the second.
    let session = dir.path().join("session.pem");
    let session = session.to_str().unwrap();
    let (ok, out) = s_client(&["-tls1_2", "-sess_out", session]);
    assert!(ok, "{out}");
    let (ok, out) = s_client(&["-tls1_2", "-sess_in", session]);
    assert!(
        ok && out.contains("Reused, TLSv1.2"),
        "the session was not resumed: {out}"
    );

    // Regression: clients that reset connections while the server writes (s_time's
    // handshake-and-drop) once killed the node with SIGPIPE from a vectored write.
    let lb_pid = stack.server("lb1")["pid"].as_u64().unwrap() as u32;
    let (_, out) = run(Command::new("openssl").args([
        "s_time",
        "-connect",
        &format!("{lb}:8443"),
        "-new",
        "-time",
        "2",
    ]));
    assert!(out.contains("connections in"), "{out}");
    assert!(
        webstack_test_support::alive(lb_pid),
        "lb1's node died under s_time:\n{out}"
    );

    // `webstack status` shows the endpoint's certificate.
    let status = stack.ok(&["status"]);
    assert!(
        status.contains(&format!("{lb}:8443"))
            && status.contains("certificate for www.foobar.com")
            && status.contains("from local CA"),
        "{status}"
    );
}

/// A blocking TLS client that trusts one CA file.
fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("www.foobar.com").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// One keep-alive GET on an open connection; returns the status line.
fn get_on<S: Read + Write>(stream: &mut BufReader<S>, path: &str) -> String {
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n"
    )
    .unwrap();
    stream.get_mut().flush().unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    status.trim().to_string()
}

fn served_not_after(stack: &Stack) -> u64 {
    stack.component("lb1", "load_balancer")["certificates"][0]["not_after"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn certificate_files_are_replaced_without_dropping_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = webstack_tls::LocalCa::load_or_create(&dir.path().join("ca"), "test", "foobar.com")
        .unwrap();
    let names = vec!["www.foobar.com".to_string()];
    let write = |lifetime: Duration| {
        let issued = ca.issue(&names, &[], lifetime).unwrap();
        // Written aside and renamed, as a deploy tool should; the node never reads half.
        for (name, text) in [
            ("site.pem", &issued.chain_pem),
            ("site.key", &issued.key_pem),
        ] {
            std::fs::write(dir.path().join(format!("{name}.new")), text).unwrap();
            std::fs::rename(
                dir.path().join(format!("{name}.new")),
                dir.path().join(name),
            )
            .unwrap();
        }
        issued
    };
    let first = write(Duration::from_secs(3600));
    let design = secured_design(
        dir.path(),
        r#"tls = { port = 8443, cert = "site.pem", key = "site.key" }"#,
    );
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let addr = SocketAddr::new(stack.host(10), 8443);
    let first_secs = first
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(served_not_after(&stack), first_secs);

    let mut open = BufReader::new(tls_connect(addr, ca.cert_path()));
    assert_eq!(get_on(&mut open, "/"), "HTTP/1.1 200 OK");

    let second = write(Duration::from_secs(7200));
    let second_secs = second
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    eventually(
        Duration::from_secs(20),
        "the new certificate is served",
        || (served_not_after(&stack) == second_secs).then_some(()),
    );
    // The connection opened before the change goes on, on its own keys.
    assert_eq!(get_on(&mut open, "/api/messages"), "HTTP/1.1 200 OK");
    // A new connection gets the new certificate.
    let mut fresh = tls_connect(addr, ca.cert_path());
    let mut reader = BufReader::new(&mut fresh);
    assert_eq!(get_on(&mut reader, "/"), "HTTP/1.1 200 OK");
    let leaf = fresh.conn.peer_certificates().unwrap()[0].clone();
    let info = webstack_tls::cert_info(&leaf).unwrap();
    assert_eq!(info.not_after, second.not_after);

    // A broken replacement is not served: the good one stays, and the node says why.
    std::fs::write(dir.path().join("site.pem"), "not a certificate").unwrap();
    eventually(
        Duration::from_secs(20),
        "the node reports the broken file",
        || {
            let log = std::fs::read_to_string(
                stack
                    .state_dir()
                    .join(format!("stacks/{}/logs/lb1.log", stack.name)),
            )
            .unwrap_or_default();
            log.contains("keeping the current certificate")
                .then_some(())
        },
    );
    assert_eq!(served_not_after(&stack), second_secs);
    let mut again = BufReader::new(tls_connect(addr, ca.cert_path()));
    assert_eq!(get_on(&mut again, "/"), "HTTP/1.1 200 OK");
}

#[test]
fn bad_certificate_files_are_clear_errors_at_validate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = webstack_tls::LocalCa::load_or_create(&dir.path().join("ca"), "test", "foobar.com")
        .unwrap();
    let good = ca
        .issue(&["www.foobar.com".into()], &[], Duration::from_secs(3600))
        .unwrap();
    let other = ca
        .issue(&["shop.example.org".into()], &[], Duration::from_secs(3600))
        .unwrap();
    std::fs::write(dir.path().join("good.pem"), &good.chain_pem).unwrap();
    std::fs::write(dir.path().join("good.key"), &good.key_pem).unwrap();
    std::fs::write(dir.path().join("other.pem"), &other.chain_pem).unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "hello").unwrap();
    let cases = [
        ("missing.pem", "good.key", "missing.pem"),
        (
            "garbage.pem",
            "good.key",
            "garbage.pem holds no PEM certificate",
        ),
        (
            "good.pem",
            "other.key",
            "does not belong to the certificate in",
        ),
        ("other.pem", "other.key", "does not cover www.foobar.com"),
        (
            "good.pem",
            "garbage.pem",
            "garbage.pem holds no usable private key",
        ),
    ];
    for (cert, key, expected) in cases {
        let design = secured_design(
            dir.path(),
            &format!(r#"tls = {{ port = 8443, cert = "{cert}", key = "{key}" }}"#),
        );
        let out = Command::new(BIN)
            .args(["validate", design.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert}/{key}: {err}");
        assert!(
            err.contains(expected) && err.contains("servers.lb1.load_balancer.tls"),
            "{cert}/{key}: {err}"
        );
    }
}

/// The design with `tls = { port = 8443 }` on both web servers.
fn with_web_tls(design: &str) -> String {
    let mut text = design.to_string();
    for server in ["server1", "server2"] {
        let web = format!("[servers.{server}.web]\nport = 8080");
        assert!(text.contains(&web));
        text = text.replace(&web, &format!("{web}\ntls = {{ port = 8443 }}"));
    }
    text
}

/// Established TCP connections from `from` to `to`, from /proc/net/tcp.
fn established(from: std::net::IpAddr, to: SocketAddr) -> usize {
    let std::net::IpAddr::V4(from) = from else {
        return 0;
    };
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let hex = |ip: std::net::Ipv4Addr, port: u16| {
        format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), port)
    };
    let std::net::IpAddr::V4(to_ip) = to.ip() else {
        return 0;
    };
    let local = hex(to_ip, to.port());
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[1] == local
                && f[3] == "01"
                && f[2].split(':').next()
                    == Some(&format!("{:08X}", u32::from_le_bytes(from.octets())))
        })
        .count()
}

#[test]
fn tls_ends_at_the_balancer_and_is_encrypted_again_to_the_web_servers() {
    let dir = tempfile::tempdir().unwrap();
    let design = secured_design(dir.path(), "tls = { port = 8443 }");
    let text = with_web_tls(&std::fs::read_to_string(&design).unwrap());
    assert_eq!(text.matches("tls = { port = 8443 }").count(), 3);
    std::fs::write(&design, text).unwrap();
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let ca = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.crt", stack.name));
    let lb = stack.host(10);
    for _ in 0..4 {
        let (ok, out) = run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("www.foobar.com:8443:{lb}"),
                "https://www.foobar.com:8443/api/messages",
            ]));
        assert_eq!((ok, out.as_str()), (true, "200"));
    }
    // The balancer's kept-alive connections to the web servers are to their TLS ports.
    let to_tls: usize = [11, 12]
        .iter()
        .map(|n| established(lb, SocketAddr::new(stack.host(*n), 8443)))
        .sum();
    assert!(
        to_tls >= 1,
        "no connection from the balancer to a web server's TLS port"
    );
    let to_plain: usize = [11, 12]
        .iter()
        .map(|n| established(lb, SocketAddr::new(stack.host(*n), 8080)))
        .sum();
    assert_eq!(to_plain, 0, "traffic went to a plain port");
}

#[test]
fn a_tcp_balancer_passes_tls_through_to_the_web_servers() {
    let dir = tempfile::tempdir().unwrap();
    let design = secured_design(dir.path(), "mode = \"tcp\"\ntls = { port = 8443 }");
    let text = with_web_tls(&std::fs::read_to_string(&design).unwrap());
    std::fs::write(&design, text).unwrap();
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let ca = stack
        .state_dir()
        .join(format!("stacks/{}/tls/ca.crt", stack.name));
    let lb = stack.host(10);
    let mut served_by = std::collections::BTreeSet::new();
    for _ in 0..4 {
        // One connection at a time, round robin: the certificate verifies against the
        // stack's CA and is a web server's own (it names the web server's address).
        let (ok, text) = run(Command::new("sh").arg("-c").arg(format!(
            "openssl s_client -connect {lb}:8443 -servername www.foobar.com -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
            ca.display()
        )));
        assert!(ok, "{text}");
        for n in [11, 12] {
            if text.contains(&stack.host(n).to_string()) {
                served_by.insert(n);
            }
        }
        assert!(
            !text.contains(&lb.to_string()),
            "the balancer ended TLS: {text}"
        );
    }
    assert_eq!(
        served_by.len(),
        2,
        "round robin over both web servers' TLS: {served_by:?}"
    );
    let (ok, out) = run(Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--cacert",
        ])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("www.foobar.com:8443:{lb}"),
            "https://www.foobar.com:8443/",
        ]));
    assert_eq!(
        (ok, out.as_str()),
        (true, "200 2"),
        "HTTP/2 end to end with the web server"
    );
}
