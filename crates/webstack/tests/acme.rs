//! ACME for real: Debian's Pebble, started by this test, issues the load balancer's
//! certificate over HTTP-01. Pebble resolves www.foobar.com through the stack's own name
//! server and fetches the challenge from the stack's own HTTP port, the way Let's
//! Encrypt's validation would cross the site. The short certificate lifetime set in
//! Pebble makes the renewal (at a third of the lifetime left) happen during the test.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use webstack_test_support::{eventually, unique_subnet, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");
/// Seconds Pebble's certificates are valid: renewed after 20.
const VALIDITY: u64 = 30;

/// Pebble, stopped by its pid when the test ends.
struct Pebble {
    child: Child,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_pebble(dir: &Path, address: IpAddr, dns: SocketAddr, http_port: u16) -> Pebble {
    // Pebble's own HTTPS (its directory) needs a certificate: one from a CA of the test's.
    let ca = webstack_tls::LocalCa::load_or_create(&dir.join("pebble-ca"), "pebble", "pebble.test")
        .unwrap();
    let issued = ca
        .issue(&[], &[address], Duration::from_secs(3600))
        .unwrap();
    std::fs::write(dir.join("pebble.crt"), &issued.chain_pem).unwrap();
    std::fs::write(dir.join("pebble.key"), &issued.key_pem).unwrap();
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("{address}:14000"),
            "managementListenAddress": format!("{address}:15000"),
            "certificate": dir.join("pebble.crt"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": VALIDITY,
        }
    });
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &dns.to_string()])
        // No random 0-15 s sleep before validating, no deliberately rejected nonces.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("pebble runs (apt-get install pebble)");
    let pebble = Pebble { child };
    eventually(Duration::from_secs(20), "pebble listens", || {
        TcpStream::connect((address, 14000)).ok().map(|_| ())
    });
    pebble
}

#[test]
fn certificate_from_pebble_over_http_01_and_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = unique_subnet();
    let at = |n: u8| IpAddr::from([subnet[0], subnet[1], subnet[2], n]);
    let pebble_ip = at(250);
    let _pebble = start_pebble(dir.path(), pebble_ip, SocketAddr::new(at(2), 5353), 8080);

    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/secured.toml"
    ))
    .unwrap();
    let cut = source.find("[servers.lb1.firewall]").unwrap();
    let design = source[..cut].replace(
        "tls = { port = 8443, hsts_max_age = 31536000 }   # HTTPS; the plain port redirects (308)",
        &format!(
            r#"tls = {{ port = 8443, acme = {{ directory = "https://{pebble_ip}:14000/dir", root_ca = "pebble-ca/ca.crt" }} }}"#
        ),
    );
    let design_path = dir.path().join("secured-acme.toml");
    std::fs::write(&design_path, design).unwrap();
    let stack = Stack::up_on(BIN.as_ref(), design_path.to_str().unwrap(), subnet);

    let cert = |stack: &Stack| stack.component("lb1", "load_balancer")["certificates"][0].clone();
    let first = eventually(
        Duration::from_secs(60),
        "the certificate ordered from Pebble is served",
        || {
            let c = cert(&stack);
            c["source"].as_str()?.starts_with("ACME").then_some(c)
        },
    );
    assert!(
        first["issuer"].as_str().unwrap().contains("Pebble"),
        "{first}"
    );
    assert_eq!(first["names"], serde_json::json!(["www.foobar.com"]));
    // Renewal is due when a third of Pebble's lifetime is left.
    let (not_after, renew_at) = (
        first["not_after"].as_u64().unwrap(),
        first["renew_at"].as_u64().unwrap(),
    );
    assert_eq!(not_after - renew_at, VALIDITY / 3, "{first}");

    // The served certificate verifies against Pebble's issuing root.
    let root = dir.path().join("pebble-root.pem");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(dir.path().join("pebble-ca/ca.crt"))
        .arg("-o")
        .arg(&root)
        .arg(format!("https://{pebble_ip}:15000/roots/0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lb = at(10);
    assert_https_verifies(lb, &root);
    let key_file = stack.state_dir().join(format!(
        "stacks/{}/servers/lb1/acme-account.json",
        stack.name
    ));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the account key is private");

    // Renewed when a third of the lifetime is left, without a restart.
    let renewed = eventually(
        Duration::from_secs(60),
        "the certificate is renewed",
        || {
            let c = cert(&stack);
            (c["not_after"].as_u64()? > first["not_after"].as_u64()?
                && c["source"].as_str()?.starts_with("ACME"))
            .then_some(c)
        },
    );
    assert!(renewed["issuer"].as_str().unwrap().contains("Pebble"));
    assert_https_verifies(lb, &root);
}

/// `https://www.foobar.com:8443/` through `lb` answers 200, verified against `root`.
fn assert_https_verifies(lb: IpAddr, root: &Path) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(root)
        .args([
            "--resolve",
            &format!("www.foobar.com:8443:{lb}"),
            "https://www.foobar.com:8443/",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
