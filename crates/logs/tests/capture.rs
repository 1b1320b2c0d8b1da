//! `capture_output` in a real process: this test binary runs itself again as a child that
//! captures its output into a small rotating log, prints lines, lets a grandchild (`sh`)
//! print into the same pipe, and exits. Every line must be in the log files, whole.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use webstack_logs::{capture_output, finish_capture, rotated_path, RotationPolicy};

const CHILD: &str = "WEBSTACK_LOGS_CAPTURE_CHILD";
const LINES: usize = 3000;
const POLICY: RotationPolicy = RotationPolicy {
    max_bytes: 8192,
    keep: 100,
};

/// The child's part: only runs when the parent test started this binary for it.
#[test]
fn capture_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    capture_output(Path::new(&path), POLICY).unwrap();
    for i in 0..LINES {
        // println! and eprintln! both: fds 1 and 2 go to the same pipe.
        if i % 2 == 0 {
            println!("own line {i:05}");
        } else {
            eprintln!("own line {i:05}");
        }
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg("i=0; while [ $i -lt 200 ]; do echo \"grandchild line $i\"; i=$((i+1)); done")
        .status()
        .unwrap();
    assert!(status.success());
    println!("last words");
    finish_capture(Duration::from_secs(5));
}

#[test]
fn output_and_children_are_captured_rotated_and_complete() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "capture_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut files: Vec<PathBuf> = (1..POLICY.keep)
        .rev()
        .map(|n| rotated_path(&log, n))
        .filter(|p| p.exists())
        .collect();
    files.push(log.clone());
    assert!(files.len() > 3, "the log should have rotated: {files:?}");
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    for i in 0..LINES {
        let want = format!("own line {i:05}");
        assert!(lines.contains(&want.as_str()), "{want} is missing");
    }
    for i in 0..200 {
        let want = format!("grandchild line {i}");
        assert!(lines.contains(&want.as_str()), "{want} is missing");
    }
    assert!(
        lines.contains(&"last words"),
        "the last line before exit is missing"
    );
    for file in &files[..files.len() - 1] {
        assert!(std::fs::metadata(file).unwrap().len() <= POLICY.max_bytes);
    }
}
