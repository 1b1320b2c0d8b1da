//! Guards for the map: ARCHITECTURE.md names every crate, and every source file says
//! what it is for in a `//!` line.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn architecture_md_names_every_crate() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            map.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md has no section for crates/{name}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(files.len() > 20);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not start with a //! line",
            f.display()
        );
    }
}

/// Issue 8.5: the tree is rustfmt-formatted, and CI checks formatting and clippy (with
/// warnings as errors) before it runs the tests.
#[test]
fn regression_formatting_and_lints_are_checked_before_the_tests() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let position = |needle: &str| {
        ci.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!(".ci/run does not run `{needle}`"))
    };
    let fmt = position("cargo fmt --all --check");
    let clippy = position("cargo clippy --workspace --all-targets --locked -- -D warnings");
    let test = position("cargo test --workspace --locked");
    assert!(
        fmt < test && clippy < test,
        "fmt and clippy must run before the tests"
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["fmt", "--all", "--check"])
        .current_dir(root())
        .output()
        .expect("cargo fmt runs");
    assert!(
        out.status.success(),
        "the tree is not rustfmt-formatted (run `cargo fmt`):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
