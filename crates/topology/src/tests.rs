//! Unit tests of design validation: the shipped designs, and one broken design per mistake
//! with the message a person gets for it.

use std::path::Path;

use crate::*;

fn parse(src: &str) -> Result<Design, DesignError> {
    parse_design(src, "test.toml", Path::new("/nonexistent-base"))
}

const GOOD: &str = r#"
[stack]
name = "t"
domain = "foobar.com"

[dns]
address = "127.10.0.2"
port = 5353
records = { www = ["s1"] }

[servers.s1]
address = "127.10.0.11"
web = { port = 8080, upstreams = ["s1"] }
app = { port = 8000, database = "s1" }
database = { port = 3306 }
"#;

/// Replaces `from` with `to` in the good design, checking the text was there.
fn broken(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test bug: {from:?} is not in GOOD");
    GOOD.replacen(from, to, 1)
}

fn problems(src: &str) -> Vec<Problem> {
    match parse(src) {
        Err(DesignError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

/// Asserts that exactly one problem is found, on `line`, at `key`, with `message` in it.
fn expect_one(src: &str, line: usize, key: &str, message: &str) -> Problem {
    let found = problems(src);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let p = found.into_iter().next().unwrap();
    assert_eq!((p.line, p.key.as_str()), (line, key), "{p}");
    assert!(
        p.message.contains(message),
        "message {:?} lacks {message:?}",
        p.message
    );
    assert!(p.hint.is_some(), "problem without a hint: {p}");
    p
}

#[test]
fn every_shipped_design_validates() {
    for (name, src) in SHIPPED {
        let d = parse_design(src, name, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&d.name, name);
        assert_eq!(d.domain, "foobar.com");
        assert!(d.entry_point().is_some(), "{name} has no entry point");
    }
}

#[test]
fn good_design_resolves_references() {
    let d = parse(GOOD).unwrap();
    let (host, addr) = d.entry_point().unwrap();
    assert_eq!(host, "www.foobar.com");
    assert_eq!(addr.to_string(), "127.10.0.11:8080");
    assert_eq!(
        d.server("s1").unwrap().components(),
        vec![
            ComponentKind::Web,
            ComponentKind::App,
            ComponentKind::Database
        ]
    );
}

#[test]
fn relocate_keeps_host_parts() {
    let mut d = parse(GOOD).unwrap();
    d.relocate([127, 55, 3]);
    assert_eq!(d.dns.address.to_string(), "127.55.3.2");
    assert_eq!(d.server("s1").unwrap().address.to_string(), "127.55.3.11");
}

#[test]
fn unknown_key_names_line_and_the_keys_that_exist() {
    let err = parse(&broken("port = 5353", "prot = 5353")).unwrap_err();
    let DesignError::Syntax { line, message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(line, 8);
    assert!(
        message.contains("unknown field `prot`") && message.contains("port"),
        "{message}"
    );
}

#[test]
fn wrong_type_is_a_syntax_error_with_line() {
    let err = parse(&broken("port = 5353", "port = \"fifty\"")).unwrap_err();
    let DesignError::Syntax { line, message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(line, 8);
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn port_out_of_range_is_reported() {
    let err = parse(&broken("port = 5353", "port = 70000")).unwrap_err();
    assert!(
        matches!(err, DesignError::Syntax { line: 8, .. }),
        "{err:?}"
    );
}

#[test]
fn upstream_naming_an_unknown_server() {
    let p = expect_one(
        &broken("upstreams = [\"s1\"]", "upstreams = [\"s9\"]"),
        13,
        "servers.s1.web.upstreams",
        "unknown server \"s9\"",
    );
    assert!(p.hint.unwrap().contains("s1"));
}

#[test]
fn web_server_with_no_upstream() {
    expect_one(
        &broken("upstreams = [\"s1\"]", "upstreams = []"),
        13,
        "servers.s1.web.upstreams",
        "no upstream",
    );
}

#[test]
fn two_servers_on_one_address() {
    let src = format!("{GOOD}\n[servers.s2]\naddress = \"127.10.0.11\"\napp = {{ port = 8000, database = \"s1\" }}\n");
    expect_one(
        &src,
        18,
        "servers.s2.address",
        "already the address of server s1",
    );
}

#[test]
fn port_clash_on_one_server() {
    expect_one(
        &broken("port = 8000", "port = 8080"),
        14,
        "servers.s1.app.port",
        "port 8080 is already taken on this server by servers.s1.web.port",
    );
}

#[test]
fn address_that_is_not_an_ip() {
    expect_one(
        &broken("address = \"127.10.0.11\"", "address = \"server-one\""),
        12,
        "servers.s1.address",
        "not an IP address",
    );
}

#[test]
fn app_database_on_a_server_without_one() {
    expect_one(
        &broken("database = { port = 3306 }", ""),
        14,
        "servers.s1.app.database",
        "runs no database",
    );
}

#[test]
fn record_pointing_at_unknown_target() {
    expect_one(
        &broken("www = [\"s1\"]", "www = [\"lb9\"]"),
        9,
        "dns.records.www",
        "unknown target \"lb9\"",
    );
}

#[test]
fn missing_stack_domain() {
    expect_one(
        &broken("domain = \"foobar.com\"", ""),
        2,
        "stack.domain",
        "missing key",
    );
}

#[test]
fn bad_domain_name() {
    expect_one(
        &broken("domain = \"foobar.com\"", "domain = \"foo bar\""),
        4,
        "stack.domain",
        "not a domain name",
    );
}

#[test]
fn unknown_algorithm() {
    let src = format!("{GOOD}\n[servers.lb]\naddress = \"127.10.0.10\"\nload_balancer = {{ port = 8080, algorithm = \"random\", backends = [\"s1\"] }}\n");
    let p = expect_one(
        &src,
        19,
        "servers.lb.load_balancer.algorithm",
        "unknown algorithm \"random\"",
    );
    assert!(p.hint.unwrap().contains("roundrobin"));
}

#[test]
fn replica_of_unknown_server() {
    let src = format!(
        "{GOOD}\n[servers.s2]\naddress = \"127.10.0.12\"\ndatabase = {{ replica_of = \"s7\" }}\n"
    );
    expect_one(
        &src,
        19,
        "servers.s2.database.replica_of",
        "unknown server \"s7\"",
    );
}

#[test]
fn app_writing_to_a_replica() {
    let src = format!(
        "{}\n[servers.s2]\naddress = \"127.10.0.12\"\ndatabase = {{ replica_of = \"s1\" }}\n",
        GOOD.replace("database = \"s1\"", "database = \"s2\"")
    );
    expect_one(&src, 14, "servers.s1.app.database", "runs a replica");
}

#[test]
fn sqlite_with_two_app_servers() {
    let src = format!(
        "{}\n[servers.s2]\naddress = \"127.10.0.12\"\napp = {{ storage = \"sqlite\" }}\n",
        GOOD
    );
    let found = problems(&src);
    assert!(
        found.iter().any(|p| p.key == "servers.s2.app.storage"
            && p.message.contains("SQLite")
            && p.line == 19),
        "{found:#?}"
    );
}

#[test]
fn server_named_dns_and_server_without_components() {
    let src = format!("{GOOD}\n[servers.dns]\naddress = \"127.10.0.13\"\n");
    let found = problems(&src);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("cannot be a server name"));
    assert!(found[1].message.contains("runs no load balancer"));
}

#[test]
fn floating_ip_needs_two_load_balancers() {
    let src =
        format!("{GOOD}\n[floating_ips.vip]\naddress = \"127.10.0.100\"\nservers = [\"s1\"]\n");
    let found = problems(&src);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("at least two load balancers")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p
            .message
            .contains("runs no load balancer to hold the address")),
        "{found:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once_in_line_order() {
    let src = broken("upstreams = [\"s1\"]", "upstreams = [\"s9\"]")
        .replacen("www = [\"s1\"]", "www = [\"nowhere\"]", 1)
        .replacen("port = 8000", "port = 8080", 1);
    let found = problems(&src);
    let lines: Vec<usize> = found.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![9, 13, 14], "{found:#?}");
    let rendered = DesignError::Invalid {
        file: "test.toml".into(),
        problems: found,
    }
    .to_string();
    assert!(
        rendered.starts_with("test.toml: 3 problems in the design:"),
        "{rendered}"
    );
    assert!(
        rendered.contains("test.toml:line 13: servers.s1.web.upstreams: unknown server \"s9\""),
        "{rendered}"
    );
}

#[test]
fn unknown_shipped_design_lists_the_shipped_ones() {
    let err = load("nosuchdesign").unwrap_err();
    assert!(
        err.to_string()
            .contains("simple, distributed, secured, scaled"),
        "{err}"
    );
}

#[test]
fn two_primaries_are_refused() {
    let src =
        format!("{GOOD}\n[servers.s2]\naddress = \"127.10.0.12\"\ndatabase = {{ port = 3306 }}\n");
    let p = expect_one(
        &src,
        19,
        "servers.s2.database",
        "a second primary database (the first is on s1)",
    );
    assert!(p.hint.unwrap().contains("replica_of = \"s1\""));
}

#[test]
fn log_rotation_settings() {
    assert_eq!(parse(GOOD).unwrap().logs, LogSettings::default());
    let d = parse(&format!("{GOOD}\n[logs]\nmax_size = \"16KiB\"\nkeep = 5\n")).unwrap();
    assert_eq!(
        d.logs,
        LogSettings {
            max_bytes: 16 * 1024,
            keep: 5
        }
    );
    let d = parse(&format!("{GOOD}\n[logs]\nmax_size = 100000\n")).unwrap();
    assert_eq!(d.logs.max_bytes, 100_000);
    let p = problems(&format!(
        "{GOOD}\n[logs]\nmax_size = \"64 parsecs\"\nkeep = 0\n"
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!((p[0].line, p[0].key.as_str()), (18, "logs.max_size"));
    assert!(p[0].hint.as_deref().unwrap().contains("64MiB"));
    assert_eq!((p[1].line, p[1].key.as_str()), (19, "logs.keep"));
    let p = problems(&format!("{GOOD}\n[logs]\nmax_size = \"1KiB\"\n"));
    assert!(p[0].message.contains("too small"), "{p:?}");
}

#[test]
fn firewall_rules_and_their_mistakes() {
    let with = |rules: &str| format!("{GOOD}\n[servers.s1.firewall]\n{rules}\n");
    let d = parse(&with(
        "allow = [{ from = \"127.20.0.0/16\", port = 8000, protocol = \"tcp\" }]\ndeny = [{ from = \"s1\" }]",
    ))
    .unwrap();
    let fw = d.servers[0].firewall.as_ref().unwrap();
    assert_eq!(
        fw.allow[0].from,
        FirewallSource::Network {
            address: "127.20.0.0".parse().unwrap(),
            prefix: 16
        }
    );
    assert_eq!(
        (fw.allow[0].port, fw.allow[0].protocol),
        (Some(8000), Some(Protocol::Tcp))
    );
    assert_eq!(fw.allow[0].key, "servers.s1.firewall.allow[0]");
    assert_eq!(fw.deny[0].from, FirewallSource::Server("s1".into()));

    let p = problems(&with(
        "allow = [{ from = \"nosuch\" }, { from = \"127.0.0.0/40\" }, { from = \"any\", port = 70000 }, { from = \"any\", protocol = \"sctp\" }, { port = 80 }]",
    ));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "servers.s1.firewall.allow[0].from",
            "servers.s1.firewall.allow[1].from",
            "servers.s1.firewall.allow[2].port",
            "servers.s1.firewall.allow[3].protocol",
            "servers.s1.firewall.allow[4].from",
        ],
        "{p:?}"
    );
    assert!(
        p[0].message.contains("no server \"nosuch\"")
            && p[0].hint.as_deref().unwrap().contains("s1")
    );
    assert!(p[1].hint.as_deref().unwrap().contains("prefix up to 32"));
    assert!(p[2].message.contains("70000 is not a port"));
    assert!(p[3].message.contains("unknown protocol \"sctp\""));
    assert!(p.iter().all(|p| p.line == 18), "{p:?}");
}

/// GOOD with an agent on s1 and a collector server, plus `extra` TOML at the end.
fn monitored(extra: &str) -> String {
    format!(
        "{GOOD}monitoring = {{ port = 9100 }}\n\n[servers.mon]\naddress = \"127.10.0.20\"\n[servers.mon.collector]\nport = 9200\n{extra}"
    )
}

#[test]
fn agents_report_to_the_one_collector_with_the_default_rules() {
    let d = parse(&monitored("")).unwrap();
    let s1 = d.server("s1").unwrap();
    let m = s1.monitoring.as_ref().unwrap();
    assert_eq!(m.collector.as_deref(), Some("mon"));
    assert_eq!(
        (m.buffer, m.interval),
        (DEFAULT_AGENT_BUFFER, std::time::Duration::from_secs(1))
    );
    let c = d.server("mon").unwrap().collector.as_ref().unwrap();
    assert_eq!(c.alerts.len(), webstack_alerts::default_rules().len());
    assert_eq!(
        (c.max_logs, c.window),
        (20_000, std::time::Duration::from_secs(900))
    );
}

#[test]
fn alert_rules_are_changed_turned_off_and_added_by_name() {
    let d = parse(&monitored(
        r#"[[servers.mon.collector.alerts]]
name = "ReplicationLagHigh"
expr = "webstack_db_replication_lag_seconds > 5"
for = "30s"
[[servers.mon.collector.alerts]]
name = "SemiSyncOff"
disabled = true
[[servers.mon.collector.alerts]]
name = "SlowApp"
expr = "webstack_http_requests_total{status=\"5xx\"} > 100"
severity = "info"
"#,
    ))
    .unwrap();
    let rules = &d.server("mon").unwrap().collector.as_ref().unwrap().alerts;
    let lag = rules
        .iter()
        .find(|r| r.name == "ReplicationLagHigh")
        .unwrap();
    assert_eq!(
        (lag.expr.as_str(), lag.for_),
        (
            "webstack_db_replication_lag_seconds > 5",
            std::time::Duration::from_secs(30)
        )
    );
    assert_eq!(
        lag.severity, "warning",
        "what the entry leaves out stays the default"
    );
    assert!(rules.iter().all(|r| r.name != "SemiSyncOff"));
    assert_eq!(
        rules.iter().find(|r| r.name == "SlowApp").unwrap().severity,
        "info"
    );
}

#[test]
fn a_rule_that_does_not_parse_is_named_with_its_key() {
    let src = monitored("[[servers.mon.collector.alerts]]\nname = \"Typo\"\nexpr = \"up ==\"\n");
    let line = src.lines().count();
    let p = expect_one(
        &src,
        line,
        "servers.mon.collector.alerts[0].expr",
        "does not parse at character 6",
    );
    assert!(p.message.contains("expected a metric"), "{p}");
    expect_one(
        &monitored("[[servers.mon.collector.alerts]]\nname = \"Nope\"\ndisabled = true\n"),
        src.lines().count() - 1,
        "servers.mon.collector.alerts[0].disabled",
        "no default alert \"Nope\"",
    );
    let p = problems(&monitored(
        "[[servers.mon.collector.alerts]]\nname = \"ServerDown\"\nfor = \"soon\"\n",
    ));
    assert!(
        p.iter()
            .any(|p| p.key.ends_with("alerts[0].for") && p.message.contains("not a duration")),
        "{p:#?}"
    );
}

#[test]
fn agents_and_collectors_are_checked() {
    let two = format!(
        "{}\n[servers.mon2]\naddress = \"127.10.0.21\"\n[servers.mon2.collector]\n",
        monitored("")
    );
    let p = problems(&two);
    assert!(
        p.iter()
            .any(|p| p.key == "servers.s1.monitoring.collector"
                && p.message.contains("2 collectors")),
        "{p:#?}"
    );
    let src = GOOD.to_string() + "monitoring = { collector = \"s1\" }\n";
    let p = problems(&src);
    assert!(
        p.iter().any(|p| p.message.contains("runs no collector")),
        "{p:#?}"
    );
    let src = GOOD.to_string() + "monitoring = { buffer = 0 }\n";
    let p = problems(&src);
    assert!(
        p.iter().any(|p| p.key == "servers.s1.monitoring.buffer"),
        "{p:#?}"
    );
}
