//! The command line of the real binary: bad designs, refused designs, a second `up`, a
//! stale stack, bad arguments. Each gets a clear message and the right exit code.

use std::process::{Command, Output};

use webstack_test_support::Stack;

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

fn webstack(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("WEBSTACK_STATE_DIR", state)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_shipped_design_validates() {
    let state = tempfile::tempdir().unwrap();
    for name in ["simple", "distributed", "secured", "scaled"] {
        let out = webstack(state.path(), &["validate", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
    }
    let listed = String::from_utf8_lossy(&webstack(state.path(), &["designs"]).stdout).into_owned();
    assert!(
        ["simple", "distributed", "secured", "scaled"]
            .iter()
            .all(|d| listed.contains(d)),
        "{listed}"
    );
}

#[test]
fn broken_design_file_reports_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"[stack]
name = "broken"
domain = "foobar.com"

[dns]
address = "127.20.0.2"
records = { www = ["server1"] }

[servers.server1]
address = "127.20.0.11"
web = { port = 8080, upstreams = ["app9"] }
app = { port = 8080, database = "server1" }
"#,
    )
    .unwrap();
    let out = webstack(dir.path(), &["up", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!("{file}: 3 problems in the design")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:line 11: servers.server1.web.upstreams: unknown server \"app9\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:line 12: servers.server1.app.port: port 8080 is already taken"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:line 12: servers.server1.app.database: server \"server1\" runs no database"
        )),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(
        !dir.path().join("stacks").exists(),
        "a refused design must not leave state behind"
    );
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[stack]\nname = \"t\"\ndomian = \"foobar.com\"\n").unwrap();
    let out = webstack(dir.path(), &["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:3:1: unknown field `domian`, expected",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn unknown_design_and_bad_arguments() {
    let state = tempfile::tempdir().unwrap();
    let unknown = webstack(state.path(), &["up", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no design named \"nosuch\""),
        "{}",
        stderr(&unknown)
    );
    let subnet = webstack(state.path(), &["up", "simple", "--subnet", "10.1.2.0/24"]);
    assert!(
        stderr(&subnet).contains("not a /24 of the loopback range"),
        "{}",
        stderr(&subnet)
    );
    let flag = webstack(state.path(), &["up", "--frobnicate"]);
    assert_eq!(flag.status.code(), Some(2));
    let nothing = webstack(state.path(), &["status"]);
    assert!(
        stderr(&nothing).contains("no stack is running"),
        "{}",
        stderr(&nothing)
    );
}

#[test]
fn second_up_is_refused_and_a_stale_record_is_cleaned() {
    let stack = Stack::up(BIN.as_ref(), "simple");
    let again = stack.run(&["up", "simple", "--detach", "--subnet", &stack.subnet_text()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("stack simple is already running"),
        "{}",
        stderr(&again)
    );
    let logs = stack.run(&["logs", "server1"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("database: ready"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    assert!(stderr(&stack.run(&["logs", "nosuch"])).contains("no server \"nosuch\""));

    // Simulate a crash of the whole machine: every process dies, the record stays.
    for pid in stack.recorded_pids() {
        // SAFETY: kill(2) on pids the stack recorded.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    webstack_test_support::eventually(
        std::time::Duration::from_secs(10),
        "the killed nodes are gone",
        || {
            stack
                .recorded_pids()
                .iter()
                .all(|p| !webstack_test_support::alive(*p))
                .then_some(())
        },
    );
    let restarted = stack.run(&[
        "up",
        "simple",
        "--detach",
        "--subnet",
        &stack.subnet_text(),
        "--timeout",
        "240",
    ]);
    let text = String::from_utf8_lossy(&restarted.stdout);
    assert!(restarted.status.success(), "{text}{}", stderr(&restarted));
    assert!(text.contains("did not stop cleanly"), "{text}");
}

#[test]
fn a_server_on_the_operators_address_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../designs/simple.toml"
    ))
    .unwrap();
    let path = state.path().join("operator.toml");
    std::fs::write(
        &path,
        source.replace("address = \"127.10.0.11\"", "address = \"127.10.0.254\""),
    )
    .unwrap();
    let out = webstack(
        state.path(),
        &["up", path.to_str().unwrap(), "--subnet", "127.99.251.0/24"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("server server1 has address 127.99.251.254")
            && err.contains("the operator's console"),
        "{err}"
    );
}
