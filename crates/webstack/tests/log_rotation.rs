//! Issue 8.4: every log a stack writes is rotated by size ([logs] in the design), and
//! rotation loses no line: the access log of a benchmark is complete across its files, and
//! a node's output (its own and its children's, through the capture pipe) reaches its log
//! up to the last line it writes when it stops.

use std::path::{Path, PathBuf};

use webstack_test_support::Stack;

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

/// The simple design with small logs: 16 KiB each, enough files kept that none of the
/// benchmark's lines is dropped, so every one can be counted.
fn small_logs_design(dir: &Path) -> PathBuf {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/simple.toml"
    ))
    .unwrap();
    let path = dir.join("small-logs.toml");
    std::fs::write(
        &path,
        format!("{source}\n[logs]\nmax_size = \"16KiB\"\nkeep = 60\n"),
    )
    .unwrap();
    path
}

/// The files of a log, oldest first.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..60)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_path_buf());
    files
}

#[test]
fn regression_logs_rotate_by_size_and_lose_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let design = small_logs_design(dir.path());
    let stack = Stack::up(BIN.as_ref(), design.to_str().unwrap());
    let requests = 1500;
    let out = stack.ok(&[
        "bench",
        "http://www.foobar.com:8080/robots.txt?rotation",
        "-n",
        &requests.to_string(),
        "-c",
        "4",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], requests, "{report:#}");

    let server = stack
        .state_dir()
        .join(format!("stacks/{}/servers/server1", stack.name));
    // The web server writes its access log in batches (every 200 ms at the latest).
    let count = |files: &[PathBuf]| -> usize {
        files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("/robots.txt?rotation "))
                    .count()
            })
            .sum()
    };
    webstack_test_support::eventually(
        std::time::Duration::from_secs(10),
        "every request is in the access log",
        || (count(&log_files(&server.join("access.log"))) >= requests).then_some(()),
    );
    let access = log_files(&server.join("access.log"));
    assert!(
        access.len() >= 8,
        "{requests} lines of ~150 bytes should have rotated 16 KiB logs several times: {access:?}"
    );
    let mut lines = 0;
    for file in &access {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.ends_with('\n'),
            "{} ends in a partial line",
            file.display()
        );
        assert!(
            text.len() as u64 <= 16 * 1024 || file == access.last().unwrap(),
            "{} has {} bytes",
            file.display(),
            text.len()
        );
        lines += text
            .lines()
            .filter(|l| l.contains("/robots.txt?rotation "))
            .count();
    }
    assert_eq!(
        lines,
        requests,
        "access log lines across {} files",
        access.len()
    );

    // The node's log is written through the capture pipe; its last words at shutdown
    // (after every component stopped) are in it.
    stack.down();
    let node_log = stack
        .state_dir()
        .join(format!("stacks/{}/logs/server1.log", stack.name));
    let text: String = log_files(&node_log)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(text.contains("web: listening on"), "{text}");
    assert!(text.contains("database: stopped"), "{text}");
}
