//! A stack of the real `webstack` binary, in a state directory of its own and on a /24 of
//! the loopback range of its own, so tests run side by side. Dropping it runs
//! `webstack down`, then kills by pid anything the stack recorded that still runs.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Stack {
    bin: PathBuf,
    state: tempfile::TempDir,
    pub subnet: [u8; 3],
    pub name: String,
    /// What `up` printed.
    pub up_output: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A /24 of 127.0.0.0/8 that no other test of this run uses: the process id and a counter
/// pick it, away from the shipped designs' 127.10.x.
pub fn unique_subnet() -> [u8; 3] {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    [
        127,
        100 + (pid % 150) as u8,
        ((pid / 150) as u8).wrapping_mul(16).wrapping_add(n as u8),
    ]
}

impl Stack {
    /// Runs `webstack up DESIGN --detach` and panics with its output if it fails.
    pub fn up(bin: &Path, design: &str) -> Stack {
        Stack::up_on(bin, design, unique_subnet())
    }

    /// `up` on a /24 the test chose (from `unique_subnet`), for tests that must know the
    /// stack's addresses before it starts.
    pub fn up_on(bin: &Path, design: &str, subnet: [u8; 3]) -> Stack {
        let state = tempfile::Builder::new()
            .prefix("ws")
            .tempdir()
            .expect("a temporary state directory");
        let mut stack = Stack {
            bin: bin.to_path_buf(),
            state,
            subnet,
            name: String::new(),
            up_output: String::new(),
        };
        let out = stack.run(&[
            "up",
            design,
            "--detach",
            "--subnet",
            &stack.subnet_text(),
            "--timeout",
            "240",
        ]);
        stack.up_output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "webstack up {design} failed:\n{}",
            stack.up_output
        );
        stack.name = stack.status()["stack"]
            .as_str()
            .expect("status names the stack")
            .to_string();
        stack
    }

    pub fn subnet_text(&self) -> String {
        format!(
            "{}.{}.{}.0/24",
            self.subnet[0], self.subnet[1], self.subnet[2]
        )
    }

    /// An address of the design moved into this stack's /24 (`11` → `127.X.Y.11`).
    pub fn host(&self, last_octet: u8) -> IpAddr {
        IpAddr::from([self.subnet[0], self.subnet[1], self.subnet[2], last_octet])
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Runs the webstack binary against this stack's state directory.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("WEBSTACK_STATE_DIR", self.state.path())
            .output()
            .expect("the webstack binary runs")
    }

    /// Starts `webstack bench ARGS --json` against this stack in the background; its
    /// report comes from [`Load::report`], and it is killed by its pid if the test ends
    /// first.
    pub fn load(&self, args: &[&str]) -> Load {
        let child = Command::new(&self.bin)
            .arg("bench")
            .args(args)
            .arg("--json")
            .env("WEBSTACK_STATE_DIR", self.state.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the webstack binary runs");
        Load { child: Some(child) }
    }

    /// Runs the webstack binary and returns what it printed, failing the test (with its
    /// error output) if it did not succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "webstack {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// The status entry of one server.
    pub fn server(&self, name: &str) -> Value {
        let status = self.status();
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no server {name} in {status:#}"))
    }

    /// Where a component of a server listens.
    pub fn listen(&self, server: &str, kind: &str) -> SocketAddr {
        self.component(server, kind)["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn component(&self, server: &str, kind: &str) -> Value {
        self.server(server)["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("{server} has no {kind}"))
    }

    /// Every process id the stack has recorded: nodes and the children they run.
    pub fn recorded_pids(&self) -> Vec<u32> {
        recorded_pids(self.state.path())
    }

    /// `webstack down`, checked.
    pub fn down(&self) -> Output {
        let out = self.run(&["down"]);
        assert!(
            out.status.success(),
            "down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// A `webstack bench` running in the background (see [`Stack::load`]).
pub struct Load {
    child: Option<std::process::Child>,
}

impl Load {
    /// Waits for the benchmark to end and returns its JSON report.
    pub fn report(mut self) -> Value {
        let out = self
            .child
            .take()
            .expect("a load reports once")
            .wait_with_output()
            .expect("the benchmark ends");
        assert!(
            out.status.success(),
            "webstack bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
    }

    /// Failed requests, all kinds together.
    pub fn failed(report: &Value) -> u64 {
        report["errors"]
            .as_object()
            .map_or(0, |e| e.values().filter_map(Value::as_u64).sum())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let pids = self.recorded_pids();
        let _ = self.run(&["down"]);
        for pid in pids {
            if alive(pid) {
                // SAFETY: kill(2) on a pid this test's stack recorded.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Every process id recorded under a state directory: the nodes of every stack (from
/// stack.json) and the children they run (from each node.json).
pub fn recorded_pids(state_dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let root = state_dir.join("stacks");
    for stack in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if let Ok(bytes) = std::fs::read(stack.path().join("stack.json")) {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            pids.extend(
                v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["pid"].as_u64())
                    .map(|p| p as u32),
            );
        }
        for server in std::fs::read_dir(stack.path().join("servers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(bytes) = std::fs::read(server.path().join("node.json")) {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                pids.extend(
                    v["components"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["child_pid"].as_u64())
                        .map(|p| p as u32),
                );
            }
        }
    }
    pids
}

pub use webstack_net::process::alive;

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after
/// `patience`. For facts that become true eventually, instead of sleeping.
pub fn eventually<T>(patience: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {patience:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The local TCP sockets listening on an address, from /proc/net/tcp.
pub fn listening_sockets_on(ip: IpAddr) -> Vec<SocketAddr> {
    let IpAddr::V4(v4) = ip else {
        return Vec::new();
    };
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            if *state != "0A" {
                return None;
            }
            let (hex_ip, hex_port) = local.split_once(':')?;
            let raw = u32::from_str_radix(hex_ip, 16).ok()?;
            let addr = std::net::Ipv4Addr::from(raw.to_le_bytes());
            let port = u16::from_str_radix(hex_port, 16).ok()?;
            (addr == v4).then(|| SocketAddr::new(IpAddr::V4(addr), port))
        })
        .collect()
}
