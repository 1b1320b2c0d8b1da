//! `webstack up` in the foreground: it says when the stack is ready, and Ctrl-C (SIGINT)
//! stops every server it started.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use webstack_test_support::{alive, unique_subnet};

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// The foreground `up` and its state; on drop the child is killed and the stack downed.
struct Foreground {
    child: Child,
    state: tempfile::TempDir,
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(BIN)
            .arg("down")
            .env("WEBSTACK_STATE_DIR", self.state.path())
            .output();
    }
}

fn recorded_node_pids(state: &std::path::Path) -> Vec<u32> {
    let text = std::fs::read_to_string(state.join("stacks/simple/stack.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

#[test]
fn ctrl_c_stops_every_server() {
    let state = tempfile::tempdir().unwrap();
    let s = unique_subnet();
    let child = Command::new(BIN)
        .args([
            "up",
            "simple",
            "--subnet",
            &format!("{}.{}.{}.0/24", s[0], s[1], s[2]),
        ])
        .env("WEBSTACK_STATE_DIR", state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut up = Foreground { child, state };

    let (tx, rx) = mpsc::channel();
    let stdout = up.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no readiness line; output so far:\n{}", seen.join("\n")));
        let ready = line.contains("Press Ctrl-C");
        seen.push(line);
        if ready {
            break;
        }
    }
    let nodes = recorded_node_pids(up.state.path());
    assert_eq!(nodes.len(), 2, "{seen:?}");

    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "up did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "up exited with {status}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("Stopped 2 server(s)")),
        "{rest:?}"
    );
    for pid in nodes {
        assert!(!alive(pid), "node {pid} survived Ctrl-C");
    }
    assert!(!up.state.path().join("stacks/simple/stack.json").exists());
}
