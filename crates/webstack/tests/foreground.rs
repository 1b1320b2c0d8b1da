//! `webstack up` in the foreground: it says when the stack is ready, and Ctrl-C (SIGINT),
//! SIGTERM and a closed terminal (SIGHUP) stop every server it started, also when the
//! reader of its output died with the same signal.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use webstack_test_support::{
    alive, eventually, listening_sockets_on, recorded_pids, unique_subnet,
};

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

/// `webstack up | tee FILE` in a process group of its own, as a shell runs a pipeline;
/// on drop the whole group is killed and the stack downed, whatever the test saw.
struct Pipeline {
    shell: Child,
    state: tempfile::TempDir,
    subnet: [u8; 3],
    output: std::path::PathBuf,
}

impl Pipeline {
    fn start() -> Pipeline {
        let state = tempfile::tempdir().unwrap();
        let subnet = unique_subnet();
        let output = state.path().join("up.out");
        let shell = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" up simple --subnet "$1" | tee "$2" >/dev/null"#)
            .arg(BIN)
            .arg(format!("{}.{}.{}.0/24", subnet[0], subnet[1], subnet[2]))
            .arg(&output)
            .env("WEBSTACK_STATE_DIR", state.path())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Pipeline {
            shell,
            state,
            subnet,
            output,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn record(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.path().join("stacks/simple/stack.json"))
            .unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Every pid of the stack: `up` itself, the nodes, and the children they run.
    fn pids(&self) -> Vec<u32> {
        let mut pids = recorded_pids(self.state.path());
        pids.extend(self.record()["supervisor_pid"].as_u64().map(|p| p as u32));
        pids
    }

    fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.shell.id() as i32), signal) };
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
        let _ = self.shell.wait();
        let _ = Command::new(BIN)
            .arg("down")
            .env("WEBSTACK_STATE_DIR", self.state.path())
            .output();
    }
}

/// Issue 8.1: with its output in a pipe whose reader dies with the same signal, `up`
/// still stops every process of the stack, and nothing is left listening.
fn pipe_reader_dies_with_the_signal(signal: i32) {
    let mut pipeline = Pipeline::start();
    eventually(Duration::from_secs(240), "up prints Press Ctrl-C", || {
        if let Ok(Some(exit)) = pipeline.shell.try_wait() {
            panic!(
                "the pipeline ended ({exit}) before the stack was ready:\n{}",
                pipeline.output()
            );
        }
        pipeline.output().contains("Press Ctrl-C").then_some(())
    });
    let pids = pipeline.pids();
    assert!(pids.len() >= 4, "up, two nodes and mariadbd: {pids:?}");
    let addresses = [2, 11].map(|last| {
        IpAddr::from([
            pipeline.subnet[0],
            pipeline.subnet[1],
            pipeline.subnet[2],
            last,
        ])
    });
    assert!(addresses
        .iter()
        .all(|a| !listening_sockets_on(*a).is_empty()));

    // The terminal's signal reaches the whole pipeline: `tee` dies of it, so every later
    // write of `up` fails.
    pipeline.signal_group(signal);
    eventually(
        Duration::from_secs(90),
        "every process of the stack is gone",
        || pids.iter().all(|p| !alive(*p)).then_some(()),
    );
    for address in addresses {
        assert_eq!(
            listening_sockets_on(address),
            Vec::new(),
            "still listening on {address}"
        );
    }
    assert!(
        !pipeline
            .state
            .path()
            .join("stacks/simple/stack.json")
            .exists(),
        "the stack's record was not removed"
    );
}

#[test]
fn regression_ctrl_c_with_output_into_a_dead_pipe_stops_the_stack() {
    pipe_reader_dies_with_the_signal(libc::SIGINT);
}

#[test]
fn regression_closed_terminal_sighup_stops_the_stack() {
    pipe_reader_dies_with_the_signal(libc::SIGHUP);
}
