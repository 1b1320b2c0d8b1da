//! Data-driven review tests: each design in `tests/corpus/` says in its header which
//! finding kinds it must trigger (`# expect:`) and which it must not (`# expect-not:`).
//! Every kind is covered both ways across the corpus.

use std::collections::HashSet;
use std::path::Path;

use webstack_review::{review, Kind, Mix};

const ALL_KINDS: &[Kind] = &[
    Kind::SinglePointOfFailure,
    Kind::NoHttps,
    Kind::TlsEndsEarly,
    Kind::NoFirewall,
    Kind::ExposedDatabase,
    Kind::ExposedAppServer,
    Kind::NoMonitoring,
    Kind::DeployDowntime,
    Kind::NoReplica,
    Kind::ManualFailover,
    Kind::SlowHealthChecks,
    Kind::ColocatedTiers,
    Kind::Capacity,
];

fn header_list(source: &str, key: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("# {key}:")))
        .flat_map(|l| l.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_corpus_design_triggers_exactly_what_it_declares() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut triggered: HashSet<String> = HashSet::new();
    let mut avoided: HashSet<String> = HashSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let loaded = webstack_topology::load_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let found: HashSet<String> = review(&loaded.design, &Mix::default())
            .iter()
            .map(|f| f.kind.name())
            .collect();
        for k in header_list(&loaded.source, "expect") {
            assert!(
                found.contains(&k),
                "{}: expected {k}, found {found:?}",
                path.display()
            );
            triggered.insert(k);
        }
        for k in header_list(&loaded.source, "expect-not") {
            assert!(
                !found.contains(&k),
                "{}: did not expect {k}, found {found:?}",
                path.display()
            );
            avoided.insert(k);
        }
    }
    for k in ALL_KINDS {
        if *k == Kind::Capacity {
            continue; // reported for every design, by intent
        }
        assert!(
            triggered.contains(&k.name()),
            "no corpus design triggers {}",
            k.name()
        );
        assert!(
            avoided.contains(&k.name()),
            "no corpus design avoids {}",
            k.name()
        );
    }
}
