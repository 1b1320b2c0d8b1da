//! A design that runs the user's own application command instead of the built-in app:
//! static files from its public/ folder, everything else to the command, which is
//! restarted when it crashes.

use std::net::SocketAddr;
use std::time::Duration;

use webstack_test_support::http::get;
use webstack_test_support::{alive, eventually, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

const APP: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s pid=%d db=%s" % (os.environ["WEBSTACK_SERVER"], os.getpid(), os.environ["DATABASE_URL"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

const DESIGN: &str = r#"
[stack]
name = "ownapp"
domain = "example.test"

[dns]
address = "127.10.0.2"
port = 5353
records = { www = ["s1"] }

[codebase]
path = "site"
command = ["python3", "app.py"]

[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { port = 8000, storage = "sqlite" }
"#;

#[test]
fn application_command_serves_and_is_restarted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("site/public")).unwrap();
    std::fs::write(dir.path().join("site/public/hello.txt"), "static hello\n").unwrap();
    std::fs::write(dir.path().join("site/app.py"), APP).unwrap();
    let design = dir.path().join("ownapp.toml");
    std::fs::write(&design, DESIGN).unwrap();

    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let site = SocketAddr::new(stack.host(11), 8080);
    assert_eq!(
        get(site, "www.example.test", "/hello.txt").text(),
        "static hello\n"
    );
    let first = get(site, "www.example.test", "/anything");
    assert!(first.text().starts_with("s1 pid="), "{}", first.text());
    assert!(first.text().contains("db=sqlite://"), "{}", first.text());

    let pid = stack.component("s1", "app")["child_pid"]
        .as_u64()
        .expect("the app reports its command's pid") as u32;
    // SAFETY: kill(2) on the pid the stack reported for the application command.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let second = eventually(
        Duration::from_secs(30),
        "the application command is restarted and serves",
        || {
            let r = get(site, "www.example.test", "/anything");
            (r.status == 200 && !r.text().contains(&format!("pid={pid} "))).then_some(r)
        },
    );
    assert!(second.text().starts_with("s1 pid="), "{}", second.text());
    assert!(!alive(pid));
}
