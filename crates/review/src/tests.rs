//! Unit tests: single points of failure and availability on the shipped designs, checked
//! against hand-computed values; the curriculum's limitations; diagrams.

use std::collections::HashMap;
use std::path::Path;

use crate::*;

fn shipped(name: &str) -> webstack_topology::Design {
    webstack_topology::parse_design(
        webstack_topology::shipped_source(name).unwrap(),
        name,
        Path::new("."),
    )
    .unwrap()
}

fn spof_servers(name: &str) -> Vec<String> {
    let mut v: Vec<String> = review(&shipped(name), &Mix::default())
        .into_iter()
        .filter(|f| f.kind == Kind::SinglePointOfFailure)
        .flat_map(|f| f.servers)
        .collect();
    v.sort();
    v
}

fn kinds(name: &str) -> Vec<Kind> {
    review(&shipped(name), &Mix::default())
        .into_iter()
        .map(|f| f.kind)
        .collect()
}

const A: f64 = 0.999;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn single_points_of_failure_of_the_shipped_designs() {
    assert_eq!(spof_servers("simple"), vec!["server1"]);
    assert_eq!(spof_servers("distributed"), vec!["lb1"]);
    // server1's database has a replica on server2 in `secured`: promotion restores writes.
    assert_eq!(spof_servers("secured"), vec!["lb1"]);
    assert_eq!(spof_servers("scaled"), vec!["app1", "db1", "web1"]);
}

#[test]
fn spof_names_the_components_that_have_no_second_copy() {
    let f = review(&shipped("simple"), &Mix::default())
        .into_iter()
        .find(|f| f.kind == Kind::SinglePointOfFailure)
        .unwrap();
    assert_eq!(f.components, vec!["web", "app", "database"]);
    let f = review(&shipped("distributed"), &Mix::default())
        .into_iter()
        .find(|f| f.kind == Kind::SinglePointOfFailure)
        .unwrap();
    assert_eq!(
        (f.servers.clone(), f.components.clone()),
        (vec!["lb1".to_string()], vec!["load_balancer".to_string()])
    );
}

#[test]
fn availability_matches_hand_computed_values() {
    // The name server counts like any server: with one, everything is in series with it.
    let ns = A;
    // One server: the site is up exactly when it (and the name server) is.
    assert!(close(estimate(&shipped("simple"), A).availability, ns * A));
    // lb1 in series with (server1 or server2): each runs web, app and a database (the
    // replica on server2 is promoted when server1 is lost).
    let pair = 1.0 - (1.0 - A) * (1.0 - A);
    assert!(close(
        estimate(&shipped("distributed"), A).availability,
        ns * A * pair
    ));
    // Two load balancers in parallel, then web1, app1 and db1 in series.
    assert!(close(
        estimate(&shipped("scaled"), A).availability,
        ns * pair * A * A * A
    ));
    // secured: lb1 in series with (server1 or server2): server2 can serve alone once its
    // replica is promoted.
    assert!(close(
        estimate(&shipped("secured"), A).availability,
        ns * A * pair
    ));
    // ha: every tier a pair, the name servers too (the collector does not count).
    assert!(close(
        estimate(&shipped("ha"), A).availability,
        pair.powi(5)
    ));
    let est = estimate(&shipped("simple"), A);
    assert!((est.nines - -(1.0 - ns * A).log10()).abs() < 1e-9);
    let minutes = (1.0 - ns * A) * 365.25 * 24.0 * 60.0;
    assert!(
        (est.downtime_minutes_per_year - minutes).abs() < 0.01,
        "{}",
        est.downtime_minutes_per_year
    );
    assert_eq!(human_downtime(525.96), "8h 45m");
}

#[test]
fn each_review_names_the_curriculums_limitations() {
    // Task 0: single point of failure, downtime during deploys, no horizontal scaling.
    let simple = kinds("simple");
    assert!(
        simple.contains(&Kind::SinglePointOfFailure)
            && simple.contains(&Kind::DeployDowntime)
            && simple.contains(&Kind::Capacity)
            && simple.contains(&Kind::ColocatedTiers)
    );
    // Task 1: the load balancer is a SPOF, no firewall, no monitoring, no HTTPS, one
    // primary takes the writes.
    let distributed = kinds("distributed");
    for k in [
        Kind::SinglePointOfFailure,
        Kind::NoFirewall,
        Kind::NoMonitoring,
        Kind::NoHttps,
        Kind::ManualFailover,
    ] {
        assert!(distributed.contains(&k), "distributed lacks {k:?}");
    }
    // Task 2: TLS ends at the load balancer, one server takes writes, servers with every
    // component.
    let secured = kinds("secured");
    for k in [
        Kind::TlsEndsEarly,
        Kind::ManualFailover,
        Kind::ColocatedTiers,
        Kind::SinglePointOfFailure,
    ] {
        assert!(secured.contains(&k), "secured lacks {k:?}");
    }
    assert!(
        !secured.contains(&Kind::NoFirewall)
            && !secured.contains(&Kind::NoMonitoring)
            && !secured.contains(&Kind::NoHttps)
    );
    // Task 3: the load balancers are redundant; the single web, app and database are not.
    let scaled = kinds("scaled");
    assert!(scaled.contains(&Kind::NoReplica) && scaled.contains(&Kind::DeployDowntime));
    // Every shipped design has a single name server (RFC 2182 asks for two).
    for design in ["simple", "distributed", "secured", "scaled"] {
        assert!(kinds(design).contains(&Kind::OneNameServer), "{design}");
    }
}

#[test]
fn capacity_names_the_first_tier_to_saturate() {
    let f = review(&shipped("simple"), &Mix::default())
        .into_iter()
        .find(|f| f.kind == Kind::Capacity)
        .unwrap();
    assert!(f.title.contains("app tier"), "{}", f.title);
    let writes = Mix::parse("static=0,reads=0,writes=1").unwrap();
    let f = review(&shipped("scaled"), &writes)
        .into_iter()
        .find(|f| f.kind == Kind::Capacity)
        .unwrap();
    assert!(
        f.title.contains("app tier") || f.title.contains("database tier"),
        "{}",
        f.title
    );
    assert!(Mix::parse("reads=x").is_err());
    assert!(Mix::parse("cats=1").is_err());
}

#[test]
fn svg_is_well_formed_and_shows_every_server() {
    for (name, _) in webstack_topology::SHIPPED {
        let design = shipped(name);
        let mut health = HashMap::new();
        health.insert(design.servers[0].name.clone(), false);
        let svg = diagram::svg(&design, &health);
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        for s in &design.servers {
            let id = format!("node-{}", s.name);
            assert!(
                doc.descendants()
                    .any(|n| n.attribute("id") == Some(id.as_str())),
                "{name}: no box for {}",
                s.name
            );
        }
        assert!(svg.contains("#f6c9c9"), "a failing server is drawn red");
        let mermaid = diagram::mermaid(&design);
        let dot = diagram::dot(&design);
        for s in &design.servers {
            assert!(mermaid.contains(&s.name) && dot.contains(&format!("\"{}\"", s.name)));
        }
    }
    let scaled = diagram::svg(&shipped("scaled"), &HashMap::new());
    assert!(
        scaled.contains("floating IP vip")
            && scaled.contains("firewall")
            && scaled.contains("monitoring agent")
    );
    assert!(diagram::edges(&shipped("secured"))
        .iter()
        .any(|e| e.label == "replication" && e.dashed));
}
