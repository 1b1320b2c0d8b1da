//! Turns a raw design file into a validated `Design`, reporting every problem at once.
//!
//! Validation never stops at the first problem: each check records what it finds and goes
//! on, so a person fixes a design in one pass. Checks that depend on a value that is
//! already wrong (a reference to a server whose address did not parse) stay quiet rather
//! than repeat the same mistake in other words.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use crate::error::{DesignError, Problem};
use crate::model::*;
use crate::raw::*;

/// The built-in codebases, by name.
pub const BUILTIN_CODEBASES: &[&str] = &["foobar"];

/// Default ports, the ones the real components use; the shipped designs choose
/// unprivileged ones so that no design needs root.
pub const DEFAULT_DNS_PORT: u16 = 53;
pub const DEFAULT_HTTP_PORT: u16 = 80;
pub const DEFAULT_TLS_PORT: u16 = 443;
pub const DEFAULT_APP_PORT: u16 = 8000;
pub const DEFAULT_DATABASE_PORT: u16 = 3306;
pub const DEFAULT_MONITORING_PORT: u16 = 9100;
pub const DEFAULT_COLLECTOR_PORT: u16 = 9200;

pub use webstack_alerts::parse_duration;
/// HAProxy's customary stats port.
pub const DEFAULT_STATS_PORT: u16 = 8404;

/// What a load balancer asks a backend's web server by default: its own health path,
/// answered without touching the app servers behind it.
pub const DEFAULT_CHECK_PATH: &str = "/.webstack/health";

/// The process name the DNS server runs under, so no server may take it.
pub const DNS_PROCESS_NAME: &str = "dns";

/// Parses and validates a design. `file` names the source in messages; `base_dir` is where
/// relative paths in the design start.
pub fn parse_design(source: &str, file: &str, base_dir: &Path) -> Result<Design, DesignError> {
    let raw: RawDesign = toml::from_str(source).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(source, s.start))
            .unwrap_or((1, 1));
        DesignError::Syntax {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut v = Validator {
        source,
        problems: Vec::new(),
        base_dir,
        sqlite_keys: Vec::new(),
        primaries: Vec::new(),
    };
    let design = v.design(raw);
    if v.problems.is_empty() {
        Ok(design)
    } else {
        v.problems.sort_by_key(|p| p.line);
        Err(DesignError::Invalid {
            file: file.to_string(),
            problems: v.problems,
        })
    }
}

/// `any`, a server name, `ADDRESS` or `ADDRESS/PREFIX`; `None` when it is none of them
/// (a server name is anything that looks like one; the caller checks it exists).
fn parse_source(text: &str) -> Option<FirewallSource> {
    if text == "any" {
        return Some(FirewallSource::Any);
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    match addr.parse::<IpAddr>() {
        Ok(address) => {
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            };
            Some(FirewallSource::Network { address, prefix })
        }
        Err(_) if prefix.is_none() && is_name(text) => {
            Some(FirewallSource::Server(text.to_string()))
        }
        Err(_) => None,
    }
}

/// The smallest log size a design may set: a few lines of any log.
const MIN_LOG_BYTES: u64 = 4096;

/// `"64MiB"`, `"64 MB"`, `"4096"` or the integer `4096`, in bytes. Units are powers of
/// 1024 (KiB, MiB, GiB) or of 1000 (KB, MB, GB), as `du` and nginx users write them.
fn parse_size(value: &toml::Value) -> Option<u64> {
    let text = match value {
        toml::Value::Integer(n) => return u64::try_from(*n).ok(),
        toml::Value::String(s) => s.trim(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

struct Validator<'a> {
    source: &'a str,
    problems: Vec<Problem>,
    base_dir: &'a Path,
    /// Where each app server asks for SQLite, for the check across servers.
    sqlite_keys: Vec<(String, Range<usize>)>,
    /// Every primary database, for the one-primary check.
    primaries: Vec<(String, Range<usize>)>,
}

/// What validation learns about the servers before it checks references between them.
struct ServerFacts {
    has_web: bool,
    has_app: bool,
    has_lb: bool,
    has_collector: bool,
    database_role: Option<Option<String>>,
}

impl Validator<'_> {
    fn problem(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, _) = line_col(self.source, span.start);
        self.problems.push(Problem {
            line,
            key: key.into(),
            message: message.into(),
            hint,
        });
    }

    fn design(&mut self, raw: RawDesign) -> Design {
        let whole = 0..0;
        let (name, domain, description) = self.stack(raw.stack);

        let facts: BTreeMap<String, ServerFacts> = raw
            .servers
            .iter()
            .map(|(name, s)| {
                let s = s.get_ref();
                let facts = ServerFacts {
                    has_web: s.web.is_some(),
                    has_app: s.app.is_some(),
                    has_lb: s.load_balancer.is_some(),
                    has_collector: s.collector.is_some(),
                    database_role: s
                        .database
                        .as_ref()
                        .map(|d| d.get_ref().replica_of.as_ref().map(|r| r.get_ref().clone())),
                };
                (name.get_ref().clone(), facts)
            })
            .collect();
        let fip_names: Vec<String> = raw
            .floating_ips
            .keys()
            .map(|k| k.get_ref().clone())
            .collect();

        let codebase = self.codebase(raw.codebase);

        let mut addresses: HashMap<IpAddr, String> = HashMap::new();
        let dns = self.dns(raw.dns, &facts, &fip_names, &mut addresses);

        let mut servers = Vec::new();
        if raw.servers.is_empty() {
            self.problem(
                whole.clone(),
                "servers",
                "the design has no servers",
                Some(
                    "add at least one [servers.NAME] table with an address and a component".into(),
                ),
            );
        }
        for (name, server) in raw.servers {
            if let Some(s) = self.server(name, server, &facts, &mut addresses) {
                servers.push(s);
            }
        }
        self.cross_server_checks(&servers);

        let mut floating_ips = Vec::new();
        for (name, fip) in raw.floating_ips {
            if let Some(f) = self.floating_ip(name, fip, &facts, &mut addresses) {
                floating_ips.push(f);
            }
        }

        let logs = self.logs(raw.logs);

        Design {
            name,
            domain,
            description,
            dns,
            codebase,
            servers,
            floating_ips,
            logs,
            base_dir: self.base_dir.to_path_buf(),
        }
    }

    fn stack(&mut self, raw: Option<Spanned<RawStack>>) -> (String, String, Option<String>) {
        let Some(raw) = raw else {
            self.problem(
                0..0,
                "stack",
                "the design has no [stack] table",
                Some("add [stack] with name = \"mysite\" and domain = \"foobar.com\"".into()),
            );
            return (String::new(), String::new(), None);
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let name = match raw.name {
            Some(n) if is_name(n.get_ref()) => n.into_inner(),
            Some(n) => {
                self.problem(
                    n.span(),
                    "stack.name",
                    format!("{:?} is not a usable stack name", n.get_ref()),
                    Some(
                        "use 1 to 32 lowercase letters, digits and '-', starting with a letter"
                            .into(),
                    ),
                );
                String::new()
            }
            None => {
                self.problem(
                    span.clone(),
                    "stack.name",
                    "missing key",
                    Some("add name = \"mysite\"".into()),
                );
                String::new()
            }
        };
        let domain = match raw.domain {
            Some(d) if is_domain(d.get_ref()) => d.into_inner().to_ascii_lowercase(),
            Some(d) => {
                self.problem(
                    d.span(),
                    "stack.domain",
                    format!("{:?} is not a domain name", d.get_ref()),
                    Some("write the zone the site lives in, for example \"foobar.com\"".into()),
                );
                String::new()
            }
            None => {
                self.problem(
                    span,
                    "stack.domain",
                    "missing key",
                    Some("add domain = \"foobar.com\"".into()),
                );
                String::new()
            }
        };
        (name, domain, raw.description)
    }

    fn tls(&mut self, raw: Spanned<RawTls>, key: &str) -> Tls {
        let span = raw.span();
        let t = raw.into_inner();
        let files_given = t.cert.is_some() || t.key.is_some();
        let certificate = match (t.cert, t.key, t.acme) {
            (None, None, None) => CertificateSource::LocalCa,
            (Some(cert), Some(k), None) => {
                let (cert, k) = (
                    self.base_dir.join(cert.get_ref()),
                    self.base_dir.join(k.get_ref()),
                );
                CertificateSource::Files { cert, key: k }
            }
            (Some(_), None, None) | (None, Some(_), None) => {
                self.problem(
                    span.clone(),
                    format!("{key}.tls"),
                    "a certificate file needs its key file, and a key its certificate",
                    Some(
                        "give both: tls = { port = 8443, cert = \"site.pem\", key = \"site.key\" }"
                            .into(),
                    ),
                );
                CertificateSource::LocalCa
            }
            (_, _, Some(acme)) if files_given => {
                self.problem(acme.span(), format!("{key}.tls.acme"), "ACME and certificate files are two sources; choose one",
                    Some("remove cert and key to order the certificate with ACME, or remove acme to serve the files".into()));
                CertificateSource::LocalCa
            }
            (_, _, Some(acme)) => {
                let aspan = acme.span();
                let acme = acme.into_inner();
                let directory = match acme.directory {
                    Some(d)
                        if d.get_ref().starts_with("https://")
                            || d.get_ref().starts_with("http://") =>
                    {
                        d.into_inner()
                    }
                    Some(d) => {
                        self.problem(d.span(), format!("{key}.tls.acme.directory"), format!("{:?} is not an http(s) URL", d.get_ref()),
                            Some("the ACME directory URL, e.g. \"https://acme-v02.api.letsencrypt.org/directory\"".into()));
                        String::new()
                    }
                    None => {
                        self.problem(
                            aspan,
                            format!("{key}.tls.acme.directory"),
                            "the ACME server's directory URL is missing",
                            Some("add directory = \"https://…/directory\"".into()),
                        );
                        String::new()
                    }
                };
                let root_ca = acme.root_ca.map(|r| {
                    let path = self.base_dir.join(r.get_ref());
                    if !path.is_file() {
                        self.problem(r.span(), format!("{key}.tls.acme.root_ca"), format!("{} is not a file", path.display()),
                            Some("the PEM file of the ACME server's root CA, relative to the design file".into()));
                    }
                    path
                });
                CertificateSource::Acme {
                    directory,
                    root_ca,
                    email: acme.email,
                }
            }
        };
        Tls {
            port: self.port(t.port, &format!("{key}.tls.port"), DEFAULT_TLS_PORT),
            certificate,
            hsts_max_age: t.hsts_max_age.map(|h| h.into_inner()).filter(|h| *h > 0),
            redirect_http: t.redirect_http.unwrap_or(true),
        }
    }

    fn firewall_rule(
        &mut self,
        raw: Spanned<RawFirewallRule>,
        key: &str,
        facts: &BTreeMap<String, ServerFacts>,
    ) -> Option<FirewallRule> {
        let span = raw.span();
        let r = raw.into_inner();
        let Some(from) = r.from else {
            self.problem(span, format!("{key}.from"), "the rule says no source",
                Some("from = a server of the design, an address, a range like \"127.20.0.0/16\", or \"any\"".into()));
            return None;
        };
        let source = match parse_source(from.get_ref()) {
            Some(FirewallSource::Server(name)) if !facts.contains_key(&name) => {
                let known: Vec<&str> = facts.keys().map(String::as_str).collect();
                self.problem(
                    from.span(),
                    format!("{key}.from"),
                    format!("no server {name:?} in the design"),
                    Some(format!(
                        "name one of {}, an address, a range like \"127.20.0.0/16\", or \"any\"",
                        known.join(", ")
                    )),
                );
                return None;
            }
            Some(source) => source,
            None => {
                self.problem(from.span(), format!("{key}.from"), format!("{:?} is not a server name, an address or a range", from.get_ref()),
                    Some("write a range as ADDRESS/PREFIX with a prefix up to 32 (IPv4) or 128 (IPv6): \"127.20.0.0/16\"".into()));
                return None;
            }
        };
        let port = match r.port {
            None => None,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.problem(
                        p.span(),
                        format!("{key}.port"),
                        format!("{} is not a port", p.get_ref()),
                        Some(
                            "a port is 1 to 65535; leave port out for every port of the server"
                                .into(),
                        ),
                    );
                    return None;
                }
            },
        };
        let protocol = match r.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None => None,
            Some("tcp") => Some(Protocol::Tcp),
            Some("udp") => Some(Protocol::Udp),
            Some(other) => {
                let p = r.protocol.as_ref().unwrap();
                self.problem(
                    p.span(),
                    format!("{key}.protocol"),
                    format!("unknown protocol {other:?}"),
                    Some("protocol is \"tcp\" or \"udp\"; leave it out for both".into()),
                );
                return None;
            }
        };
        Some(FirewallRule {
            from: source,
            port,
            protocol,
            key: key.to_string(),
        })
    }

    fn logs(&mut self, raw: Option<Spanned<RawLogs>>) -> LogSettings {
        let mut logs = LogSettings::default();
        let Some(raw) = raw else {
            return logs;
        };
        let raw = raw.into_inner();
        if let Some(size) = raw.max_size {
            match parse_size(size.get_ref()) {
                Some(bytes) if bytes >= MIN_LOG_BYTES => logs.max_bytes = bytes,
                Some(bytes) => self.problem(
                    size.span(),
                    "logs.max_size",
                    format!("{bytes} bytes is too small for a log file"),
                    Some(format!("use at least {MIN_LOG_BYTES} bytes (\"4KiB\"); the default is \"64MiB\"")),
                ),
                None => self.problem(
                    size.span(),
                    "logs.max_size",
                    match size.get_ref() {
                        toml::Value::String(text) => format!("\"{text}\" is not a size"),
                        other => format!("a {} is not a size", other.type_str()),
                    },
                    Some("write a number of bytes or a size with a unit: \"64MiB\", \"512KiB\", \"1GiB\"".into()),
                ),
            }
        }
        if let Some(keep) = raw.keep {
            match u32::try_from(*keep.get_ref()) {
                Ok(n @ 1..=1000) => logs.keep = n,
                _ => self.problem(
                    keep.span(),
                    "logs.keep",
                    format!("keep = {} is out of range", keep.get_ref()),
                    Some("keep counts the files of each log, the live one included: 1 to 1000 (default 3)".into()),
                ),
            }
        }
        logs
    }

    fn codebase(&mut self, raw: Option<Spanned<RawCodebase>>) -> Codebase {
        let Some(raw) = raw else {
            return Codebase::Builtin("foobar".into());
        };
        let span = raw.span();
        let raw = raw.into_inner();
        match (raw.builtin, raw.path) {
            (Some(_), Some(p)) => {
                self.problem(
                    p.span(),
                    "codebase.path",
                    "a codebase is either builtin or a path, not both",
                    Some("remove one of builtin and path".into()),
                );
                Codebase::Builtin("foobar".into())
            }
            (Some(b), None) => {
                if let Some(c) = &raw.command {
                    self.problem(
                        c.span(),
                        "codebase.command",
                        "a builtin codebase runs inside webstack and takes no command",
                        Some(
                            "remove command, or use path = \"FOLDER\" for your own application"
                                .into(),
                        ),
                    );
                }
                if !BUILTIN_CODEBASES.contains(&b.get_ref().as_str()) {
                    self.problem(
                        b.span(),
                        "codebase.builtin",
                        format!("there is no builtin codebase {:?}", b.get_ref()),
                        Some(format!(
                            "builtin codebases: {}",
                            BUILTIN_CODEBASES.join(", ")
                        )),
                    );
                }
                Codebase::Builtin(b.into_inner())
            }
            (None, Some(p)) => {
                let path = self.base_dir.join(p.get_ref());
                if !path.is_dir() {
                    self.problem(
                        p.span(),
                        "codebase.path",
                        format!("{} is not a folder", path.display()),
                        Some(
                            "give the folder of your application, relative to the design file"
                                .into(),
                        ),
                    );
                }
                if let Some(c) = &raw.command {
                    if c.get_ref().is_empty() {
                        self.problem(c.span(), "codebase.command", "the command is empty",
                            Some("write the program and its arguments, for example [\"python3\", \"app.py\"]".into()));
                    }
                }
                Codebase::Path {
                    path,
                    command: raw.command.map(|c| c.into_inner()),
                }
            }
            (None, None) => {
                self.problem(
                    span,
                    "codebase",
                    "the codebase names neither builtin nor path",
                    Some(
                        "add builtin = \"foobar\", or path = \"FOLDER\" with command = [...]"
                            .into(),
                    ),
                );
                Codebase::Builtin("foobar".into())
            }
        }
    }

    fn address(
        &mut self,
        raw: Option<Spanned<String>>,
        table_span: Range<usize>,
        key: &str,
        owner: &str,
        seen: &mut HashMap<IpAddr, String>,
    ) -> Option<IpAddr> {
        let Some(raw) = raw else {
            self.problem(
                table_span,
                key,
                "missing key",
                Some("add address = \"127.10.0.N\" (a loopback address of its own)".into()),
            );
            return None;
        };
        let Ok(ip) = raw.get_ref().parse::<IpAddr>() else {
            self.problem(
                raw.span(),
                key,
                format!("{:?} is not an IP address", raw.get_ref()),
                Some("write an IPv4 or IPv6 address, for example \"127.10.0.11\"".into()),
            );
            return None;
        };
        if ip.is_unspecified() {
            self.problem(
                raw.span(),
                key,
                format!("{ip} is the wildcard address, not one server's"),
                Some("give the server an address of its own, for example \"127.10.0.11\"".into()),
            );
            return None;
        }
        if let Some(other) = seen.get(&ip) {
            self.problem(raw.span(), key, format!("{ip} is already the address of {other}"),
                Some("every server, the DNS server and every floating IP need an address of their own".into()));
        } else {
            seen.insert(ip, owner.to_string());
        }
        Some(ip)
    }

    fn port(&mut self, raw: Option<Spanned<u16>>, key: &str, default: u16) -> u16 {
        match raw {
            Some(p) if *p.get_ref() == 0 => {
                self.problem(
                    p.span(),
                    key,
                    "port 0 is not a port a client can reach",
                    Some(format!(
                        "choose a port from 1 to 65535, for example {default}"
                    )),
                );
                default
            }
            Some(p) => p.into_inner(),
            None => default,
        }
    }

    fn dns(
        &mut self,
        raw: Option<Spanned<RawDns>>,
        facts: &BTreeMap<String, ServerFacts>,
        fips: &[String],
        seen: &mut HashMap<IpAddr, String>,
    ) -> Dns {
        let empty = Dns {
            address: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_DNS_PORT,
            records: Vec::new(),
            monitoring: None,
            secondaries: Vec::new(),
        };
        let Some(raw) = raw else {
            self.problem(
                0..0,
                "dns",
                "the design has no [dns] table",
                Some("add [dns] with an address and [dns.records] www = [\"SERVER\"]".into()),
            );
            return empty;
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let address = self.address(
            raw.address,
            span.clone(),
            "dns.address",
            "the DNS server",
            seen,
        );
        let port = self.port(raw.port, "dns.port", DEFAULT_DNS_PORT);
        if raw.records.is_empty() {
            self.problem(
                span.clone(),
                "dns.records",
                "the zone has no records",
                Some("add [dns.records] www = [\"SERVER\"] so that www resolves".into()),
            );
        }
        let mut records = Vec::new();
        for (name, targets) in raw.records {
            let key = format!("dns.records.{}", name.get_ref());
            if name.get_ref() != "@" && !is_label(name.get_ref()) {
                self.problem(
                    name.span(),
                    &key,
                    format!("{:?} is not a DNS label", name.get_ref()),
                    Some(
                        "use letters, digits and '-' (for example www), or @ for the domain itself"
                            .into(),
                    ),
                );
            }
            if targets.get_ref().is_empty() {
                self.problem(
                    targets.span(),
                    &key,
                    "the record points nowhere",
                    Some("list at least one server, floating IP or address".into()),
                );
            }
            let mut resolved = Vec::new();
            for t in targets.into_inner() {
                let name_ref = t.get_ref();
                if let Ok(ip) = name_ref.parse::<IpAddr>() {
                    resolved.push(RecordTarget::Address(ip));
                } else if let Some(f) = facts.get(name_ref) {
                    if !f.has_lb && !f.has_web {
                        self.problem(t.span(), &key, format!("server {name_ref:?} runs neither a load balancer nor a web server, so it cannot answer the site's HTTP"),
                            Some("point the record at the server that receives the users' requests".into()));
                    }
                    resolved.push(RecordTarget::Server(name_ref.clone()));
                } else if fips.contains(name_ref) {
                    resolved.push(RecordTarget::FloatingIp(name_ref.clone()));
                } else {
                    self.problem(
                        t.span(),
                        &key,
                        format!("unknown target {name_ref:?}"),
                        Some(
                            known("servers", facts.keys()) + &known("; floating IPs", fips.iter()),
                        ),
                    );
                }
            }
            records.push(ARecord {
                name: name.into_inner(),
                targets: resolved,
            });
        }
        let monitoring = raw.monitoring.map(|m| {
            let monitoring = self.monitoring(m, "dns", facts);
            if monitoring.port == port {
                self.problem(
                    span.clone(),
                    "dns.monitoring.port",
                    format!("port {port} is already the name server's"),
                    Some(format!(
                        "give the agent a port of its own, for example {DEFAULT_MONITORING_PORT}"
                    )),
                );
            }
            monitoring
        });
        let secondaries = raw
            .secondaries
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let span = s.span();
                self.address(
                    Some(s),
                    span,
                    &format!("dns.secondaries[{i}]"),
                    &format!("the secondary name server dns{}", i + 2),
                    seen,
                )
            })
            .collect();
        Dns {
            address: address.unwrap_or(empty.address),
            port,
            records,
            monitoring,
            secondaries,
        }
    }

    fn server(
        &mut self,
        name: Spanned<String>,
        raw: Spanned<RawServer>,
        facts: &BTreeMap<String, ServerFacts>,
        seen: &mut HashMap<IpAddr, String>,
    ) -> Option<Server> {
        let span = raw.span();
        let raw = raw.into_inner();
        let sname = name.get_ref().clone();
        let prefix = format!("servers.{sname}");
        // `dns`, `dns2`, `dns3`, … are the name servers' processes.
        let name_server_like = sname
            .strip_prefix(DNS_PROCESS_NAME)
            .is_some_and(|rest| rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()));
        if !is_name(&sname) || name_server_like {
            self.problem(name.span(), &prefix, format!("{sname:?} cannot be a server name"),
                Some(format!("use 1 to 32 lowercase letters, digits and '-', starting with a letter; {DNS_PROCESS_NAME:?}, \"{DNS_PROCESS_NAME}2\" and so on are taken by the name servers")));
        }
        let address = self.address(
            raw.address,
            span.clone(),
            &format!("{prefix}.address"),
            &format!("server {sname}"),
            seen,
        );
        if raw.load_balancer.is_none()
            && raw.web.is_none()
            && raw.app.is_none()
            && raw.database.is_none()
            && raw.collector.is_none()
        {
            self.problem(span.clone(), &prefix, "the server runs no load balancer, web server, app server, database or collector",
                Some("add a [servers.NAME.web], .app, .database, .load_balancer or .collector table, or remove the server".into()));
        }

        let mut ports: Vec<(u16, String, Range<usize>)> = Vec::new();
        let mut take_port = |p: &Option<Spanned<u16>>, key: String, span: &Range<usize>| {
            if let Some(p) = p {
                ports.push((*p.get_ref(), key, p.span()));
            } else {
                ports.push((0, key, span.clone()));
            }
        };

        let load_balancer = raw.load_balancer.map(|lb| {
            let lspan = lb.span();
            let lb = lb.into_inner();
            let key = format!("{prefix}.load_balancer");
            take_port(&lb.port, format!("{key}.port"), &lspan);
            let algorithm = match &lb.algorithm {
                None => Algorithm::RoundRobin,
                Some(a) => Algorithm::parse(a.get_ref()).unwrap_or_else(|| {
                    self.problem(a.span(), format!("{key}.algorithm"), format!("unknown algorithm {:?}", a.get_ref()),
                        Some(format!("algorithms: {}", Algorithm::NAMES.join(", "))));
                    Algorithm::RoundRobin
                }),
            };
            if lb.backends.is_empty() {
                self.problem(lspan.clone(), format!("{key}.backends"), "the load balancer has no backends",
                    Some("list the servers whose web servers take the traffic: backends = [\"web1\", \"web2\"]".into()));
            }
            let names = self.references(&lb.backends, &format!("{key}.backends"), facts, |f| f.has_web, "runs no web server to balance to");
            for name in lb.weights.keys() {
                if !names.contains(name.get_ref()) && lb.backends.iter().all(|b| b.get_ref() != name.get_ref()) {
                    self.problem(name.span(), format!("{key}.weights"), format!("{:?} is not one of the backends", name.get_ref()),
                        Some("give weights only to servers listed in backends".into()));
                }
            }
            for b in &lb.backup {
                if lb.backends.iter().all(|x| x.get_ref() != b.get_ref()) {
                    self.problem(b.span(), format!("{key}.backup"), format!("{:?} is not one of the backends", b.get_ref()),
                        Some("list backup servers in backends too, then name them in backup".into()));
                }
            }
            let backends = names
                .iter()
                .map(|server| LbBackend {
                    server: server.clone(),
                    weight: lb.weights.iter().find(|(k, _)| k.get_ref() == server).map(|(_, w)| *w.get_ref()).unwrap_or(1),
                    backup: lb.backup.iter().any(|b| b.get_ref() == server),
                })
                .collect();
            for (name, w) in &lb.weights {
                if *w.get_ref() == 0 || *w.get_ref() > 256 {
                    self.problem(w.span(), format!("{key}.weights.{}", name.get_ref()), format!("weight {} is out of range", w.get_ref()),
                        Some("weights go from 1 to 256, as in HAProxy; to take a backend out, use `webstack lb set SERVER maint`".into()));
                }
            }
            let mode = match lb.mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("http") => LbMode::Http,
                Some("tcp") => LbMode::Tcp,
                Some(other) => {
                    let m = lb.mode.as_ref().unwrap();
                    self.problem(m.span(), format!("{key}.mode"), format!("unknown mode {other:?}"),
                        Some("mode is \"http\" (layer 7) or \"tcp\" (layer 4)".into()));
                    LbMode::Http
                }
            };
            let when_all_down = match lb.when_all_down.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("503") => WhenAllDown::ServiceUnavailable,
                Some("fail_open") => WhenAllDown::FailOpen,
                Some(other) => {
                    let m = lb.when_all_down.as_ref().unwrap();
                    self.problem(m.span(), format!("{key}.when_all_down"), format!("unknown policy {other:?}"),
                        Some("when_all_down is \"503\" (refuse) or \"fail_open\" (try every backend anyway)".into()));
                    WhenAllDown::ServiceUnavailable
                }
            };
            let proxy_protocol = match &lb.proxy_protocol {
                Some(p) if *p.get_ref() && mode == LbMode::Http => {
                    self.problem(p.span(), format!("{key}.proxy_protocol"), "the PROXY protocol is for tcp mode; http mode sends X-Forwarded-For",
                        Some("set mode = \"tcp\", or remove proxy_protocol".into()));
                    false
                }
                Some(p) => *p.get_ref(),
                None => false,
            };
            if lb.stats_port.is_some() {
                take_port(&lb.stats_port, format!("{key}.stats_port"), &lspan);
            } else {
                take_port(&None, format!("{key}.stats_port"), &lspan);
            }
            let stats_port = self.port(lb.stats_port, &format!("{key}.stats_port"), DEFAULT_STATS_PORT);
            let health_check = self.health_check(lb.health_check, &key);
            let t = lb.timeouts.unwrap_or(RawLbTimeouts { connect_ms: None, server_ms: None, client_ms: None, queue_ms: None });
            let ms = |v: Option<u64>, d: u64| std::time::Duration::from_millis(v.filter(|v| *v > 0).unwrap_or(d));
            let timeouts = LbTimeouts { connect: ms(t.connect_ms, 5_000), server: ms(t.server_ms, 30_000), client: ms(t.client_ms, 30_000), queue: ms(t.queue_ms, 5_000) };
            let tls = lb.tls.map(|t| {
                take_port(&t.get_ref().port, format!("{key}.tls.port"), &t.span());
                let span = t.span();
                let tls = self.tls(t, &key);
                // A layer-4 balancer does not end TLS: its TLS port passes the client's
                // TLS through to the web servers' own TLS ports.
                if mode == LbMode::Tcp && (tls.certificate != CertificateSource::LocalCa || tls.hsts_max_age.is_some()) {
                    self.problem(span, format!("{key}.tls"), "a tcp-mode load balancer passes TLS through and serves no certificate or HSTS of its own",
                        Some("put cert/key/acme and hsts_max_age on the web servers' tls, or use mode = \"http\" to end TLS here".into()));
                }
                tls
            });
            LoadBalancer {
                port: self.port(lb.port, &format!("{key}.port"), DEFAULT_HTTP_PORT),
                mode,
                algorithm,
                backends,
                maxconn: lb.maxconn.filter(|m| *m > 0),
                retries: lb.retries.unwrap_or(3),
                when_all_down,
                proxy_protocol,
                stats_port,
                health_check,
                timeouts,
                tls,
            }
        });

        let web = raw.web.map(|w| {
            let wspan = w.span();
            let w = w.into_inner();
            let key = format!("{prefix}.web");
            take_port(&w.port, format!("{key}.port"), &wspan);
            if w.upstreams.is_empty() {
                self.problem(wspan.clone(), format!("{key}.upstreams"), "the web server has no upstream app server",
                    Some("list the servers whose app servers it proxies to: upstreams = [\"app1\"]".into()));
            }
            let upstreams = self.references(&w.upstreams, &format!("{key}.upstreams"), facts, |f| f.has_app, "runs no app server to proxy to");
            let root = w.root.map(|r| {
                let path = self.base_dir.join(r.get_ref());
                if !path.is_dir() {
                    self.problem(r.span(), format!("{key}.root"), format!("{} is not a folder", path.display()),
                        Some("give the folder of static files relative to the design file, or leave root out to serve the codebase's public/".into()));
                }
                path
            });
            let tls = w.tls.map(|t| {
                take_port(&t.get_ref().port, format!("{key}.tls.port"), &t.span());
                self.tls(t, &key)
            });
            Web { port: self.port(w.port, &format!("{key}.port"), DEFAULT_HTTP_PORT), root, upstreams, tls }
        });

        let app = raw.app.map(|a| {
            let aspan = a.span();
            let a = a.into_inner();
            let key = format!("{prefix}.app");
            take_port(&a.port, format!("{key}.port"), &aspan);
            let storage = match &a.storage {
                None => Storage::MySql,
                Some(s) if s.get_ref() == "mysql" => Storage::MySql,
                Some(s) if s.get_ref() == "sqlite" => {
                    self.sqlite_keys.push((format!("{key}.storage"), s.span()));
                    Storage::Sqlite
                }
                Some(s) => {
                    self.problem(s.span(), format!("{key}.storage"), format!("unknown storage {:?}", s.get_ref()),
                        Some("storage is \"mysql\" (a database server of the design) or \"sqlite\" (embedded)".into()));
                    Storage::MySql
                }
            };
            let database = match (&a.database, storage) {
                (Some(d), Storage::Sqlite) => {
                    self.problem(d.span(), format!("{key}.database"), "SQLite storage is embedded in the app server and uses no database server",
                        Some("remove database, or set storage = \"mysql\"".into()));
                    None
                }
                (None, Storage::MySql) => {
                    self.problem(aspan.clone(), format!("{key}.database"), "the app server has no database",
                        Some("name the server that runs its database: database = \"db1\" (or storage = \"sqlite\")".into()));
                    None
                }
                (Some(d), Storage::MySql) => {
                    match facts.get(d.get_ref()) {
                        None => {
                            self.problem(d.span(), format!("{key}.database"), format!("unknown server {:?}", d.get_ref()),
                                Some(known("servers", facts.keys())));
                            None
                        }
                        Some(f) => match &f.database_role {
                            None => {
                                self.problem(d.span(), format!("{key}.database"), format!("server {:?} runs no database", d.get_ref()),
                                    Some("name a server with a [servers.NAME.database] table".into()));
                                None
                            }
                            Some(Some(primary)) => {
                                self.problem(d.span(), format!("{key}.database"), format!("server {:?} runs a replica, which refuses writes", d.get_ref()),
                                    Some(format!("name the primary, {primary:?}; the app reads from replicas by itself")));
                                None
                            }
                            Some(None) => Some(d.get_ref().clone()),
                        },
                    }
                }
                (None, Storage::Sqlite) => None,
            };
            App { port: self.port(a.port, &format!("{key}.port"), DEFAULT_APP_PORT), max_replica_lag: std::time::Duration::from_millis(a.max_replica_lag_ms.unwrap_or(1000)), database, storage }
        });

        let database = raw.database.map(|d| {
            let dspan = d.span();
            let d = d.into_inner();
            let key = format!("{prefix}.database");
            take_port(&d.port, format!("{key}.port"), &dspan);
            let role = match (d.role.as_ref().map(|r| r.get_ref().as_str()), &d.replica_of) {
                (None | Some("primary"), None) => DatabaseRole::Primary,
                (None | Some("replica"), Some(of)) => {
                    match facts.get(of.get_ref()).map(|f| &f.database_role) {
                        None => self.problem(
                            of.span(),
                            format!("{key}.replica_of"),
                            format!("unknown server {:?}", of.get_ref()),
                            Some(known("servers", facts.keys())),
                        ),
                        Some(None) => self.problem(
                            of.span(),
                            format!("{key}.replica_of"),
                            format!("server {:?} runs no database", of.get_ref()),
                            Some("name the server that runs the primary database".into()),
                        ),
                        Some(Some(Some(_))) => self.problem(
                            of.span(),
                            format!("{key}.replica_of"),
                            format!("server {:?} is itself a replica", of.get_ref()),
                            Some("replicate from the primary".into()),
                        ),
                        Some(Some(None)) if of.get_ref() == &sname => self.problem(
                            of.span(),
                            format!("{key}.replica_of"),
                            "a database cannot replicate from itself",
                            Some("name the server that runs the primary".into()),
                        ),
                        Some(Some(None)) => {}
                    }
                    DatabaseRole::Replica {
                        of: of.get_ref().clone(),
                    }
                }
                (Some("primary"), Some(of)) => {
                    self.problem(
                        of.span(),
                        format!("{key}.replica_of"),
                        "a primary replicates from no one",
                        Some("remove replica_of, or set role = \"replica\"".into()),
                    );
                    DatabaseRole::Primary
                }
                (Some("replica"), None) => {
                    self.problem(
                        dspan.clone(),
                        format!("{key}.replica_of"),
                        "a replica needs a primary to replicate from",
                        Some("add replica_of = \"SERVER\" naming the primary".into()),
                    );
                    DatabaseRole::Primary
                }
                (Some(other), _) => {
                    let r = d.role.as_ref().unwrap();
                    self.problem(
                        r.span(),
                        format!("{key}.role"),
                        format!("unknown role {other:?}"),
                        Some("role is \"primary\" or \"replica\"".into()),
                    );
                    DatabaseRole::Primary
                }
            };
            let semi_sync_timeout = match &d.semi_sync_timeout_ms {
                Some(t) if *t.get_ref() == 0 => {
                    self.problem(
                        t.span(),
                        format!("{key}.semi_sync_timeout_ms"),
                        "0 would never wait for a replica",
                        Some("give the wait in milliseconds, for example 1000".into()),
                    );
                    std::time::Duration::from_millis(1000)
                }
                Some(t) => std::time::Duration::from_millis(*t.get_ref()),
                None => std::time::Duration::from_millis(1000),
            };
            if let (Some(t), DatabaseRole::Replica { .. }) = (&d.semi_sync_timeout_ms, &role) {
                self.problem(
                    t.span(),
                    format!("{key}.semi_sync_timeout_ms"),
                    "a replica does not wait for acknowledgements; the primary does",
                    Some("set semi_sync_timeout_ms on the primary's database".into()),
                );
            }
            if role == DatabaseRole::Primary {
                self.primaries.push((sname.clone(), dspan.clone()));
            }
            let automatic_failover = d.automatic_failover.map(|f| {
                let fspan = f.span();
                let f = f.into_inner();
                let fkey = format!("{key}.automatic_failover");
                if let DatabaseRole::Replica { .. } = role {
                    self.problem(
                        fspan.clone(),
                        fkey.clone(),
                        "failover is a setting of the primary's cluster",
                        Some("set automatic_failover on the primary's database".into()),
                    );
                } else if !facts
                    .values()
                    .any(|f| matches!(&f.database_role, Some(Some(of)) if *of == sname))
                {
                    self.problem(
                        fspan,
                        fkey.clone(),
                        "this primary has no replica to fail over to",
                        Some("add a server with database = { role = \"replica\", replica_of = \"...\" }, or remove automatic_failover".into()),
                    );
                }
                crate::model::AutomaticFailover {
                    after: self.duration_text(&f.after, &format!("{fkey}.after"), std::time::Duration::from_secs(1), false),
                    hold_off: self.duration_text(&f.hold_off, &format!("{fkey}.hold_off"), std::time::Duration::from_secs(300), true),
                }
            });
            Database {
                port: self.port(d.port, &format!("{key}.port"), DEFAULT_DATABASE_PORT),
                role,
                semi_sync_timeout,
                automatic_failover,
            }
        });

        let firewall = raw.firewall.map(|f| {
            let f = f.into_inner();
            let key = format!("{prefix}.firewall");
            let mut rules =
                |list: Vec<Spanned<RawFirewallRule>>, kind: &str| -> Vec<FirewallRule> {
                    list.into_iter()
                        .enumerate()
                        .filter_map(|(i, r)| {
                            self.firewall_rule(r, &format!("{key}.{kind}[{i}]"), facts)
                        })
                        .collect()
                };
            let allow = rules(f.allow, "allow");
            let deny = rules(f.deny, "deny");
            Firewall { allow, deny }
        });
        let monitoring = raw.monitoring.map(|m| {
            take_port(
                &m.get_ref().port,
                format!("{prefix}.monitoring.port"),
                &m.span(),
            );
            self.monitoring(m, &prefix, facts)
        });
        let collector = raw.collector.map(|c| {
            let cspan = c.span();
            let c = c.into_inner();
            let key = format!("{prefix}.collector");
            take_port(&c.port, format!("{key}.port"), &cspan);
            let count = |v: &Option<Spanned<u32>>, name: &str, default: usize, this: &mut Self| match v {
                Some(n) if *n.get_ref() == 0 => {
                    this.problem(n.span(), format!("{key}.{name}"), "a bound of 0 keeps nothing",
                        Some(format!("use a positive number, for example {default}")));
                    default
                }
                Some(n) => *n.get_ref() as usize,
                None => default,
            };
            let max_logs = count(&c.max_logs, "max_logs", 20_000, self);
            let max_traces = count(&c.max_traces, "max_traces", 2_000, self);
            if let Some(cmd) = c.notify.as_ref().filter(|c| c.get_ref().is_empty()) {
                self.problem(cmd.span(), format!("{key}.notify"), "the notify command is empty",
                    Some("give the program and its arguments: notify = [\"/usr/local/bin/page\", \"--team\", \"web\"]".into()));
            }
            Collector {
                port: self.port(c.port, &format!("{key}.port"), DEFAULT_COLLECTOR_PORT),
                window: self.duration_text(&c.window, &format!("{key}.window"), std::time::Duration::from_secs(900), false),
                max_logs,
                max_traces,
                notify: c.notify.map(|n| n.into_inner()).filter(|n| !n.is_empty()),
                alerts: self.alert_rules(c.alerts, &key),
            }
        });

        // Ports: two listeners of one server cannot share a port. A port left out takes
        // its default, which is what the clash check must compare.
        let defaults = [
            ("load_balancer.port", DEFAULT_HTTP_PORT),
            ("load_balancer.tls.port", DEFAULT_TLS_PORT),
            ("load_balancer.stats_port", DEFAULT_STATS_PORT),
            ("web.port", DEFAULT_HTTP_PORT),
            ("web.tls.port", DEFAULT_TLS_PORT),
            ("app.port", DEFAULT_APP_PORT),
            ("database.port", DEFAULT_DATABASE_PORT),
            ("monitoring.port", DEFAULT_MONITORING_PORT),
            ("collector.port", DEFAULT_COLLECTOR_PORT),
        ];
        let mut by_port: HashMap<u16, String> = HashMap::new();
        for (port, key, span) in ports {
            let port = if port == 0 {
                defaults
                    .iter()
                    .find(|(suffix, _)| key.ends_with(suffix))
                    .map(|(_, d)| *d)
                    .unwrap_or(0)
            } else {
                port
            };
            if let Some(first) = by_port.get(&port) {
                self.problem(
                    span,
                    &key,
                    format!("port {port} is already taken on this server by {first}"),
                    Some("give each component of a server a port of its own".into()),
                );
            } else {
                by_port.insert(port, key);
            }
        }

        Some(Server {
            name: sname,
            address: address?,
            load_balancer,
            web,
            app,
            database,
            firewall,
            monitoring,
            collector,
        })
    }

    /// A monitoring agent's block (`PREFIX.monitoring`): its port, its collector (the
    /// design's one when it names none), its buffer and interval.
    fn monitoring(
        &mut self,
        m: Spanned<RawMonitoring>,
        prefix: &str,
        facts: &BTreeMap<String, ServerFacts>,
    ) -> Monitoring {
        let mspan = m.span();
        let m = m.into_inner();
        let key = format!("{prefix}.monitoring.port");
        let collector = match &m.collector {
            Some(c) => self
                .references(
                    std::slice::from_ref(c),
                    &format!("{prefix}.monitoring.collector"),
                    facts,
                    |f| f.has_collector,
                    "runs no collector",
                )
                .pop(),
            None => {
                let collectors: Vec<&String> = facts
                    .iter()
                    .filter(|(_, f)| f.has_collector)
                    .map(|(n, _)| n)
                    .collect();
                if collectors.len() > 1 {
                    self.problem(
                        mspan.clone(),
                        format!("{prefix}.monitoring.collector"),
                        format!(
                            "the design has {} collectors and the agent names none",
                            collectors.len()
                        ),
                        Some(format!(
                            "say which one it reports to: collector = {:?}",
                            collectors[0]
                        )),
                    );
                }
                collectors.first().map(|n| n.to_string())
            }
        };
        let buffer = match &m.buffer {
            Some(b) if *b.get_ref() == 0 => {
                self.problem(
                    b.span(),
                    format!("{prefix}.monitoring.buffer"),
                    "an agent with no buffer loses every record sent while the collector restarts",
                    Some(format!(
                        "give it room, for example buffer = {DEFAULT_AGENT_BUFFER}"
                    )),
                );
                DEFAULT_AGENT_BUFFER
            }
            Some(b) => *b.get_ref() as usize,
            None => DEFAULT_AGENT_BUFFER,
        };
        Monitoring {
            port: self.port(m.port, &key, DEFAULT_MONITORING_PORT),
            collector,
            buffer,
            access_records: m
                .access_records
                .map_or(DEFAULT_ACCESS_RECORDS, |a| a.into_inner()),
            interval: self.duration_text(
                &m.interval,
                &format!("{prefix}.monitoring.interval"),
                std::time::Duration::from_secs(1),
                false,
            ),
        }
    }

    /// A duration written as Prometheus writes them: `500ms`, `30s`, `1m`, `2h`.
    fn duration_text(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
        default: std::time::Duration,
        zero_ok: bool,
    ) -> std::time::Duration {
        let Some(raw) = raw else { return default };
        match parse_duration(raw.get_ref()) {
            Some(d) if !d.is_zero() || zero_ok => d,
            _ => {
                self.problem(
                    raw.span(),
                    key,
                    format!("{:?} is not a duration", raw.get_ref()),
                    Some("write a number and a unit: \"500ms\", \"30s\", \"1m\", \"2h\"".into()),
                );
                default
            }
        }
    }

    /// The collector's rules: the defaults, each changed or turned off by an entry of the
    /// same name, then the design's own.
    fn alert_rules(
        &mut self,
        raw: Vec<Spanned<RawAlert>>,
        key: &str,
    ) -> Vec<webstack_alerts::RuleSpec> {
        let mut rules = webstack_alerts::default_rules();
        let mut seen = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let rspan = r.span();
            let r = r.into_inner();
            let akey = format!("{key}.alerts[{i}]");
            let name = r.name.get_ref().clone();
            if seen.contains(&name) {
                self.problem(
                    r.name.span(),
                    format!("{akey}.name"),
                    format!("alert {name:?} is written twice"),
                    Some("keep one entry per alert name".into()),
                );
                continue;
            }
            seen.push(name.clone());
            let existing = rules.iter().position(|d| d.name == name);
            if r.disabled == Some(true) {
                match existing {
                    Some(at) => {
                        rules.remove(at);
                    }
                    None => self.problem(
                        r.name.span(),
                        format!("{akey}.disabled"),
                        format!("there is no default alert {name:?} to turn off"),
                        Some(format!(
                            "default alerts: {}",
                            webstack_alerts::default_rules()
                                .iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ),
                }
                continue;
            }
            let mut spec = match existing {
                Some(at) => rules.remove(at),
                None => {
                    if r.expr.is_none() {
                        self.problem(rspan.clone(), format!("{akey}.expr"), format!("the new alert {name:?} has no expression"),
                            Some("add expr = \"webstack_db_replication_lag_seconds > 5\", or name a default alert to change it".into()));
                        continue;
                    }
                    webstack_alerts::RuleSpec {
                        name: name.clone(),
                        expr: String::new(),
                        for_: std::time::Duration::ZERO,
                        severity: "warning".into(),
                        summary: format!("{name} on {{server}}"),
                    }
                }
            };
            if let Some(e) = &r.expr {
                if let Err(err) = webstack_alerts::parse(e.get_ref()) {
                    self.problem(e.span(), format!("{akey}.expr"), format!("the expression does not parse {err}"),
                        Some("write a PromQL comparison such as webstack_db_replication_lag_seconds > 5 (supported: selectors with = and !=, rate, increase, sum/max/min/count by, + - * /)".into()));
                }
                spec.expr = e.get_ref().clone();
            }
            if r.for_.is_some() {
                spec.for_ = self.duration_text(&r.for_, &format!("{akey}.for"), spec.for_, true);
            }
            if let Some(s) = &r.severity {
                if !["critical", "warning", "info"].contains(&s.get_ref().as_str()) {
                    self.problem(
                        s.span(),
                        format!("{akey}.severity"),
                        format!("unknown severity {:?}", s.get_ref()),
                        Some("use \"critical\", \"warning\" or \"info\"".into()),
                    );
                }
                spec.severity = s.get_ref().clone();
            }
            if let Some(s) = &r.summary {
                spec.summary = s.get_ref().clone();
            }
            rules.push(spec);
        }
        rules
    }

    fn health_check(&mut self, raw: Option<Spanned<RawHealthCheck>>, lb_key: &str) -> HealthCheck {
        let key = format!("{lb_key}.health_check");
        let raw = raw.map(|r| r.into_inner()).unwrap_or(RawHealthCheck {
            interval_ms: None,
            timeout_ms: None,
            rise: None,
            fall: None,
            path: None,
            expect_status: None,
        });
        let mut positive = |v: &Option<Spanned<u64>>, name: &str, default: u64| -> u64 {
            match v {
                Some(x) if *x.get_ref() == 0 => {
                    self.problem(
                        x.span(),
                        format!("{key}.{name}"),
                        format!("{name} must be above 0"),
                        Some(format!("the default is {default}")),
                    );
                    default
                }
                Some(x) => *x.get_ref(),
                None => default,
            }
        };
        let interval = positive(&raw.interval_ms, "interval_ms", 2000);
        let timeout = positive(&raw.timeout_ms, "timeout_ms", interval.min(1000));
        let mut count = |v: &Option<Spanned<u32>>, name: &str, default: u32| -> u32 {
            match v {
                Some(x) if *x.get_ref() == 0 => {
                    self.problem(
                        x.span(),
                        format!("{key}.{name}"),
                        format!("{name} must be at least 1"),
                        Some(format!("the default is {default}")),
                    );
                    default
                }
                Some(x) => *x.get_ref(),
                None => default,
            }
        };
        let rise = count(&raw.rise, "rise", 2);
        let fall = count(&raw.fall, "fall", 3);
        let path = match raw.path {
            Some(p) if !p.get_ref().starts_with('/') => {
                self.problem(
                    p.span(),
                    format!("{key}.path"),
                    format!("{:?} is not an absolute path", p.get_ref()),
                    Some("start the path with '/'".into()),
                );
                DEFAULT_CHECK_PATH.to_string()
            }
            Some(p) => p.into_inner(),
            None => DEFAULT_CHECK_PATH.to_string(),
        };
        let expect_status = match raw.expect_status {
            Some(s) if !(100..=599).contains(s.get_ref()) => {
                self.problem(
                    s.span(),
                    format!("{key}.expect_status"),
                    format!("{} is not an HTTP status", s.get_ref()),
                    Some("use a status from 100 to 599".into()),
                );
                200
            }
            Some(s) => s.into_inner(),
            None => 200,
        };
        HealthCheck {
            interval: std::time::Duration::from_millis(interval),
            timeout: std::time::Duration::from_millis(timeout),
            rise,
            fall,
            path,
            expect_status,
        }
    }

    /// Checks a list of server names, each of which must run a given component.
    fn references(
        &mut self,
        names: &[Spanned<String>],
        key: &str,
        facts: &BTreeMap<String, ServerFacts>,
        has: impl Fn(&ServerFacts) -> bool,
        lacks: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            match facts.get(n.get_ref()) {
                None => self.problem(
                    n.span(),
                    key,
                    format!("unknown server {:?}", n.get_ref()),
                    Some(known("servers", facts.keys())),
                ),
                Some(f) if !has(f) => self.problem(
                    n.span(),
                    key,
                    format!("server {:?} {lacks}", n.get_ref()),
                    None,
                ),
                Some(_) if out.contains(n.get_ref()) => self.problem(
                    n.span(),
                    key,
                    format!("server {:?} is listed twice", n.get_ref()),
                    Some("list each server once".into()),
                ),
                Some(_) => out.push(n.get_ref().clone()),
            }
        }
        out
    }

    fn cross_server_checks(&mut self, servers: &[Server]) {
        // A tcp-mode balancer's TLS port goes to its backends' TLS ports.
        for s in servers {
            let Some(lb) = s
                .load_balancer
                .as_ref()
                .filter(|l| l.mode == LbMode::Tcp && l.tls.is_some())
            else {
                continue;
            };
            let plain: Vec<&str> = lb
                .backends
                .iter()
                .filter(|b| {
                    servers
                        .iter()
                        .find(|o| o.name == b.server)
                        .is_some_and(|o| o.web.as_ref().is_some_and(|w| w.tls.is_none()))
                })
                .map(|b| b.server.as_str())
                .collect();
            if !plain.is_empty() {
                self.problem(
                    0..0,
                    format!("servers.{}.load_balancer.tls", s.name),
                    format!("a tcp-mode load balancer passes TLS through, but {} serve no TLS", plain.join(", ")),
                    Some(format!("give their web servers tls = {{ port = {} }}, or use mode = \"http\" to end TLS at {}", lb.tls.as_ref().map_or(443, |t| t.port), s.name)),
                );
            }
        }
        // One primary per design: a second one would be a second, unrelated copy of the
        // data that the app servers split their writes across.
        if self.primaries.len() > 1 {
            let first = self.primaries[0].0.clone();
            for (name, span) in self.primaries.split_off(1) {
                self.problem(
                    span,
                    format!("servers.{name}.database"),
                    format!("a second primary database (the first is on {first})"),
                    Some(format!(
                        "make it a replica: role = \"replica\", replica_of = \"{first}\""
                    )),
                );
            }
        }
        let app_servers = servers.iter().filter(|s| s.app.is_some()).count();
        if app_servers > 1 {
            for (key, span) in std::mem::take(&mut self.sqlite_keys) {
                self.problem(span, key,
                    format!("SQLite is embedded in one app server, and this design has {app_servers}: each would keep its own data"),
                    Some("use storage = \"mysql\" with a database server the app servers share".into()));
            }
        }
    }

    fn floating_ip(
        &mut self,
        name: Spanned<String>,
        raw: Spanned<RawFloatingIp>,
        facts: &BTreeMap<String, ServerFacts>,
        seen: &mut HashMap<IpAddr, String>,
    ) -> Option<FloatingIp> {
        let span = raw.span();
        let raw = raw.into_inner();
        let key = format!("floating_ips.{}", name.get_ref());
        let address = self.address(
            raw.address,
            span.clone(),
            &format!("{key}.address"),
            &format!("floating IP {}", name.get_ref()),
            seen,
        );
        if raw.servers.len() < 2 {
            self.problem(
                span.clone(),
                format!("{key}.servers"),
                "a floating IP needs at least two load balancers to move between",
                Some(
                    "list the active and the passive load balancer: servers = [\"lb1\", \"lb2\"]"
                        .into(),
                ),
            );
        }
        let servers = self.references(
            &raw.servers,
            &format!("{key}.servers"),
            facts,
            |f| f.has_lb,
            "runs no load balancer to hold the address",
        );
        let mut priorities: Vec<u8> = (0..servers.len())
            .map(|i| (200u32 >> i.min(7)).max(1) as u8)
            .collect();
        if let Some(p) = raw.priorities {
            for (server, prio) in p.into_inner() {
                let pkey = format!("{key}.priorities.{}", server.get_ref());
                match servers.iter().position(|s| s == server.get_ref()) {
                    None => self.problem(server.span(), pkey, format!("{:?} is not one of the floating IP's servers", server.get_ref()),
                        Some(format!("servers: {}", servers.join(", ")))),
                    Some(_) if !(1..=254).contains(prio.get_ref()) => self.problem(prio.span(), pkey,
                        format!("priority {} is outside 1 to 254", prio.get_ref()),
                        Some("VRRP keeps 0 for a master that leaves and 255 for the address's owner: use 1 to 254".into())),
                    Some(i) => priorities[i] = prio.into_inner(),
                }
            }
        }
        let interval = self.duration_text(
            &raw.interval,
            &format!("{key}.interval"),
            std::time::Duration::from_secs(1),
            false,
        );
        if interval < std::time::Duration::from_millis(10)
            || interval > std::time::Duration::from_secs(40)
        {
            self.problem(
                span.clone(),
                format!("{key}.interval"),
                format!("a heartbeat interval of {interval:?} is outside 10ms to 40s"),
                Some(
                    "VRRP advertises every 1 s by default; 100ms moves the address in about 0.35 s"
                        .into(),
                ),
            );
        }
        let preempt_delay = self.duration_text(
            &raw.preempt_delay,
            &format!("{key}.preempt_delay"),
            std::time::Duration::ZERO,
            true,
        );
        if let Some(cmd) = raw.notify.as_ref().filter(|c| c.get_ref().is_empty()) {
            self.problem(cmd.span(), format!("{key}.notify"), "the notify command is empty",
                Some("give the program and its arguments; INSTANCE, the name, the state and the priority are appended".into()));
        }
        let heartbeat_port = self.port(
            raw.heartbeat_port,
            &format!("{key}.heartbeat_port"),
            DEFAULT_HEARTBEAT_PORT,
        );
        Some(FloatingIp {
            name: name.into_inner(),
            address: address?,
            servers,
            priorities,
            interval,
            preempt: raw.preempt.unwrap_or(true),
            preempt_delay,
            heartbeat_port,
            track_weight: raw.track_weight.map_or(60, |w| w.into_inner()),
            notify: raw.notify.map(|n| n.into_inner()).filter(|n| !n.is_empty()),
        })
    }
}

fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(|s| s.as_str()).collect();
    if names.is_empty() {
        format!("{what}: none")
    } else {
        format!("{what}: {}", names.join(", "))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_domain(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    s.len() <= 253 && s.split('.').count() >= 2 && s.split('.').all(is_label)
}
