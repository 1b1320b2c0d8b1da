//! `webstack chaos` on the shipped `ha` design for a bounded time: faults one at a time
//! under a steady load with writes, then the verdict: no acknowledged write lost or
//! applied twice, and the site recovered after every fault.

use webstack_test_support::Stack;

const BIN: &str = env!("CARGO_BIN_EXE_webstack");

#[test]
fn chaos_on_the_ha_design_loses_no_acknowledged_write() {
    let stack = Stack::up(BIN.as_ref(), "ha");
    let out = stack.run(&["chaos", "--duration", "45", "--seed", "3", "--json"]);
    let steps = String::from_utf8_lossy(&out.stderr);
    eprintln!("{steps}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("chaos --json printed no report ({e}):\n{steps}"));
    assert!(out.status.success(), "chaos failed its verdict: {report:#}");
    assert_eq!(report["writes_lost"], 0, "{report:#}");
    assert_eq!(report["writes_applied_twice"], 0, "{report:#}");
    assert!(
        report["writes_acknowledged"].as_u64() > Some(100),
        "{report:#}"
    );
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.len() >= 5, "{report:#}");
    for f in faults {
        assert_eq!(f["came_back"], true, "{f}");
        assert!(f["recovered_ms"].is_number(), "{f}");
    }

    // Bad arguments are usage errors.
    let bad = stack.run(&["chaos", "--faults", "explode"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use kill, stop or pause"));
    let bad = stack.run(&["chaos", "--server", "nobody"]);
    assert_eq!(bad.status.code(), Some(2));
}
