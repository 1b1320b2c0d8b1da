//! The reviews and diagrams in docs/designs/ are what the binary says today
//! (regenerate them with `docs/generate`).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

fn output(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn design_docs_match_the_binary() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/designs");
    for design in ["simple", "distributed", "secured", "scaled"] {
        for (file, args) in [
            (format!("{design}-review.txt"), vec!["check", design]),
            (format!("{design}.svg"), vec!["diagram", design]),
            (
                format!("{design}.mmd"),
                vec!["diagram", design, "--format", "mermaid"],
            ),
        ] {
            let stored = std::fs::read_to_string(docs.join(&file)).unwrap_or_default();
            assert!(
                stored == output(&args),
                "docs/designs/{file} is out of date: run docs/generate"
            );
        }
    }
}

#[test]
fn check_fails_on_a_severity_for_ci_and_rejects_bad_arguments() {
    let out = Command::new(BIN)
        .args(["check", "simple", "--fail-on", "critical"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("check failed: 1 finding(s) at or above critical"));
    let json: serde_json::Value =
        serde_json::from_str(&output(&["check", "scaled", "--format", "json"])).unwrap();
    assert!(json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "single-point-of-failure" && f["servers"][0] == "app1"));
    assert!(json["availability"]["availability"].as_f64().unwrap() < 0.999);
    let bad = Command::new(BIN)
        .args(["check", "simple", "--fail-on", "scary"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("use info, low, medium, high or critical")
    );
    let dot = output(&["diagram", "distributed", "--format", "dot"]);
    assert!(
        dot.starts_with("digraph \"distributed\"") && dot.contains("\"lb1\" -> \"server1\""),
        "{dot}"
    );
}
