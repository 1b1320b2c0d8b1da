//! `webstack up`: starts one node process per server of a design, waits until every
//! component answers its health probe, prints how to reach the site, and (in the
//! foreground) stops the stack on Ctrl-C.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use webstack_node::StackLayout;
use webstack_topology::Design;

use crate::down::{any_alive, stop_stack};
use crate::record::{NodeRecord, StackRecord};
use crate::signals::StopSignals;
use crate::status::{collect, process_names, render};

/// Writes a line to standard output and ignores a failure: the reader of `up`'s output
/// (a terminal that closed, `| tee` killed by the same Ctrl-C) may be gone, and that must
/// never stop `up` from stopping the stack.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    /// A shipped design's name or a design file's path.
    pub design: String,
    pub subnet: Option<[u8; 3]>,
    pub detach: bool,
    /// How long to wait for every component to become healthy.
    pub timeout: Duration,
    pub state_dir: PathBuf,
    /// The `webstack` binary that nodes run as.
    pub exe: PathBuf,
}

pub async fn up(opts: UpOptions) -> Result<()> {
    let loaded = crate::load_design(&opts.design, opts.subnet)?;
    let design = loaded.design;
    preflight(&design)?;
    let layout = StackLayout::new(&opts.state_dir, &design.name);
    clear_stale(&layout)?;
    for dir in [
        layout.root().to_path_buf(),
        layout.logs_dir(),
        layout.secrets_dir(),
    ] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::secrets::ensure_password(&layout.database_password())?;
    crate::secrets::ensure_password(&layout.replication_password())?;
    crate::secrets::ensure_password(&layout.heartbeat_secret())?;
    // The stack's CA is made here, once, before any node could race to make its own.
    let local_ca = uses_local_ca(&design)
        .then(|| {
            webstack_tls::LocalCa::load_or_create(&layout.tls_dir(), &design.name, &design.domain)
        })
        .transpose()?;

    // Nodes get the design as the user named it: a shipped name, or the file's absolute
    // path, so relative paths inside it keep working.
    let design_arg = if std::path::Path::new(&opts.design).is_file() {
        std::fs::canonicalize(&opts.design)?.display().to_string()
    } else {
        opts.design.clone()
    };
    let subnet = opts.subnet.map(|p| format!("{}.{}.{}", p[0], p[1], p[2]));
    let source = std::path::Path::new(&design_arg)
        .is_file()
        .then(|| loaded.source.clone());
    let mut record = StackRecord {
        name: design.name.clone(),
        design: design_arg,
        source,
        subnet,
        supervisor_pid: None,
        nodes: Vec::new(),
    };
    say!(
        "Starting stack {} ({}) from {}",
        design.name,
        design.domain,
        loaded.label
    );
    say!("State: {}", layout.root().display());

    let mut signals = StopSignals::install()?;
    let mut children = Vec::new();
    for server in process_names(&design) {
        match spawn_node(&opts.exe, &opts.state_dir, &layout, &record, &server) {
            Ok(child) => {
                record.nodes.push(NodeRecord {
                    server: server.clone(),
                    pid: child.id(),
                });
                children.push(child);
                record.write(&layout)?;
            }
            Err(e) => {
                let _ = stop_stack(&layout, &record, false);
                return Err(e);
            }
        }
    }

    let started = tokio::select! {
        started = wait_healthy(&design, &layout, &record, &opts, &mut children) => started,
        signal = signals.recv() => Err(anyhow!("{signal} during start-up")),
    };
    if let Err(e) = started {
        say!("Start-up failed; stopping the servers that did start (data and logs are kept).");
        let _ = stop_stack(&layout, &record, false);
        return Err(e);
    }
    let status = collect(&design, &layout, &record, &opts.state_dir).await;
    say!();
    say!("{}", render(&status).trim_end_matches('\n'));
    say!();
    print_try_commands(&design, local_ca.as_ref().map(|ca| ca.cert_path()));

    if opts.detach {
        say!("\nThe stack runs in the background. `webstack status` shows it, `webstack down` stops it.");
        return Ok(());
    }
    record.supervisor_pid = Some(std::process::id());
    record.write(&layout)?;
    say!("\nPress Ctrl-C to stop the stack.");
    watch_foreground(&layout, &record, &mut children, &mut signals).await?;
    Ok(())
}

/// Refuses designs this build or this machine cannot run, naming every reason.
fn preflight(design: &Design) -> Result<()> {
    crate::check_certificates(design)?;
    let mut problems = Vec::new();
    let mut addresses: Vec<(String, std::net::IpAddr)> = design
        .dns
        .name_servers()
        .into_iter()
        .map(|(name, ip)| (format!("the name server {name}"), ip))
        .collect();
    addresses.extend(
        design
            .servers
            .iter()
            .map(|s| (format!("server {}", s.name), s.address)),
    );
    // webstack's own probes and commands connect from the operator's console; a server
    // there would be mistaken for it by every firewall of the design.
    let operator = webstack_firewall::operator_address(design);
    if let Some(s) = design.servers.iter().find(|s| s.address == operator) {
        problems.push(format!("server {} has address {operator}, which webstack's own probes and commands use (the operator's console: host .254 of the name server's /24); give it another address", s.name));
    }
    for (what, ip) in addresses {
        if !ip.is_loopback() {
            problems.push(format!("{what} has address {ip}, which is not a loopback address; `webstack up` runs every server on this machine (use `webstack node` on real hosts)"));
        }
    }
    // SAFETY: geteuid(2) cannot fail and has no effects.
    if unsafe { libc::geteuid() } != 0 {
        let mut ports = vec![("dns.port".to_string(), design.dns.port)];
        for s in &design.servers {
            ports.extend(
                s.web
                    .as_ref()
                    .map(|w| (format!("servers.{}.web.port", s.name), w.port)),
            );
            ports.extend(
                s.app
                    .as_ref()
                    .map(|a| (format!("servers.{}.app.port", s.name), a.port)),
            );
            ports.extend(
                s.database
                    .as_ref()
                    .map(|d| (format!("servers.{}.database.port", s.name), d.port)),
            );
        }
        for (key, port) in ports {
            if port < 1024 {
                problems.push(format!("{key} = {port} needs root; choose a port from 1024 up (the shipped designs use 5353, 8080, 8000, 3306)"));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "design {} cannot run on this machine:\n  - {}",
            design.name,
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// A second `up` of a running stack is refused; the record of a stack whose processes are
/// all gone (a crash, a reboot) is cleaned up.
fn clear_stale(layout: &StackLayout) -> Result<()> {
    let Some(record) = StackRecord::read(layout)? else {
        return Ok(());
    };
    if any_alive(layout, &record) {
        let pids: Vec<String> = record
            .nodes
            .iter()
            .map(|n| format!("{} pid {}", n.server, n.pid))
            .collect();
        bail!("stack {} is already running ({}); `webstack status --stack {}` shows it, `webstack down --stack {}` stops it", record.name, pids.join(", "), record.name, record.name);
    }
    say!(
        "Cleaning up after a previous run of stack {} that did not stop cleanly.",
        record.name
    );
    stop_stack(layout, &record, false)?;
    Ok(())
}

/// Starts one node process for `server`, its output appended to the server's log.
pub(crate) fn spawn_node(
    exe: &std::path::Path,
    state_dir: &std::path::Path,
    layout: &StackLayout,
    record: &StackRecord,
    server: &str,
) -> Result<Child> {
    let log_path = layout.node_log(server);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--design")
        .arg(&record.design);
    if let Some(subnet) = &record.subnet {
        cmd.arg("--subnet").arg(subnet);
    }
    // The node writes its output (and its children's) into its log through a pipe, so it
    // can rotate it; the file is its stdout too for anything said before that starts.
    cmd.arg("--log-file").arg(&log_path);
    cmd.arg(server)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal reaches `up`, which stops the
        // nodes in order, and a detached stack outlives the terminal.
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("cannot start {} node {server}", exe.display()))
}

async fn wait_healthy(
    design: &Design,
    layout: &StackLayout,
    record: &StackRecord,
    opts: &UpOptions,
    children: &mut [Child],
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut announced = BTreeSet::new();
    let mut logs = LogFollower::from_end(record.nodes.iter().map(|n| layout.node_log(&n.server)));
    loop {
        for (child, node) in children.iter_mut().zip(&record.nodes) {
            if let Ok(Some(exit)) = child.try_wait() {
                bail!(
                    "server {} stopped during start-up ({exit}). The end of its log ({}):\n{}",
                    node.server,
                    layout.node_log(&node.server).display(),
                    log_tail(&layout.node_log(&node.server), 15)
                );
            }
        }
        let status = collect(design, layout, record, &opts.state_dir).await;
        for node in &record.nodes {
            for line in logs.new_lines(&layout.node_log(&node.server)) {
                say!("  {:<10} | {line}", node.server);
            }
        }
        for s in &status.servers {
            for c in &s.components {
                if c.health.healthy && announced.insert((s.name.clone(), c.kind.clone())) {
                    say!(
                        "  {:<10} {:<9} ready after {:.1}s  ({})",
                        s.name,
                        c.kind,
                        started.elapsed().as_secs_f64(),
                        c.health.detail
                    );
                }
            }
        }
        if status.healthy() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let waiting: Vec<String> = status
                .servers
                .iter()
                .flat_map(|s| {
                    s.components
                        .iter()
                        .filter(|c| !c.health.healthy)
                        .map(move |c| format!("  - {} {}: {}", s.name, c.kind, c.health.detail))
                })
                .collect();
            bail!(
                "not every component was healthy within {:?}:\n{}\nLogs: {}",
                opts.timeout,
                waiting.join("\n"),
                layout.logs_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shows what nodes write while they start (first-start initialisation, a MariaDB
/// download), the way `docker compose up` shows its services' output.
struct LogFollower {
    offsets: std::collections::HashMap<PathBuf, usize>,
}

impl LogFollower {
    /// Follows logs from where they end now: what earlier runs wrote is not news.
    /// (Nodes start writing only after they have been spawned, which is after the record
    /// `wait_healthy` reads, so a line or two of a fast node may already be skipped; the
    /// whole log is always in `webstack logs`.)
    fn from_end(paths: impl Iterator<Item = PathBuf>) -> LogFollower {
        LogFollower {
            offsets: paths
                .map(|p| {
                    (
                        p.clone(),
                        std::fs::metadata(&p).map(|m| m.len() as usize).unwrap_or(0),
                    )
                })
                .collect(),
        }
    }

    fn new_lines(&mut self, path: &std::path::Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let offset = self.offsets.entry(path.to_path_buf()).or_insert(0);
        let Some(fresh) = text.get(*offset..) else {
            return Vec::new();
        };
        // Only whole lines: a line still being written is shown next time.
        let complete = fresh.rfind('\n').map(|i| i + 1).unwrap_or(0);
        *offset += complete;
        fresh[..complete].lines().map(str::to_string).collect()
    }
}

fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether any TLS endpoint of the design takes a certificate from the stack's CA.
fn uses_local_ca(design: &Design) -> bool {
    design.servers.iter().any(|s| {
        [
            s.load_balancer.as_ref().and_then(|l| l.tls.as_ref()),
            s.web.as_ref().and_then(|w| w.tls.as_ref()),
        ]
        .into_iter()
        .flatten()
        // An ACME endpoint serves a leaf of the stack's CA until its order completes.
        .any(|t| {
            !matches!(
                t.certificate,
                webstack_topology::CertificateSource::Files { .. }
            )
        })
    })
}

fn print_try_commands(design: &Design, ca: Option<&std::path::Path>) {
    let Some((host, addr)) = design.entry_point() else {
        return;
    };
    let (ip, port) = (addr.ip(), addr.port());
    say!("Try it:");
    // The server behind the entry: by its address, or a member of the floating IP.
    let entry = design.servers.iter().find(|s| s.address == ip).or_else(|| {
        let f = design.floating_ips.iter().find(|f| f.address == ip)?;
        design.server(f.servers.first()?)
    });
    let tls = entry.and_then(|s| {
        s.load_balancer
            .as_ref()
            .and_then(|l| l.tls.as_ref())
            .or_else(|| s.web.as_ref().and_then(|w| w.tls.as_ref()))
    });
    // The site's URL as a user reaches it: over HTTPS when the entry has TLS (its plain
    // port only redirects there), with the stack's CA when that issued the certificate.
    let (scheme, port, flags) = match tls {
        Some(t) => {
            if let Some(ca) = ca {
                say!("  (the stack's certificate authority: {})", ca.display());
            }
            let cacert = ca
                .map(|p| format!("--cacert {} ", p.display()))
                .unwrap_or_default();
            ("https", t.port, cacert)
        }
        None => ("http", port, String::new()),
    };
    let base = format!("{scheme}://{host}:{port}");
    let resolve = format!("{flags}--resolve {host}:{port}:{ip}");
    say!("  curl {resolve} {base}/");
    if scheme == "https" {
        say!("  curl --http2 {resolve} {base}/api/messages");
    }
    say!("  curl {resolve} -H 'Content-Type: application/json' -d '{{\"author\":\"ada\",\"message\":\"hello\"}}' {base}/api/messages");
    say!("  curl {resolve} {base}/api/messages");
    say!(
        "  dig @{} -p {} {host}",
        design.dns.address,
        design.dns.port
    );
    if let Some((name, addr)) = crate::monitor::collector(design) {
        say!("Monitoring: the dashboard of {name} is http://{addr}/ (`webstack alerts`, `webstack trace REQUEST_ID`, `webstack logs --grep TEXT`)");
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP, reporting servers that die meanwhile (a
/// `webstack kill` is a fault people inject on purpose), then stops the stack. The record
/// is read from disk each time, since `webstack start` may have replaced a node since.
async fn watch_foreground(
    layout: &StackLayout,
    record: &StackRecord,
    children: &mut [Child],
    signals: &mut StopSignals,
) -> Result<()> {
    let mut reported: BTreeSet<u32> = BTreeSet::new();
    loop {
        tokio::select! {
            signal = signals.recv() => {
                say!("\n{signal} received.");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for c in children.iter_mut() {
                    let _ = c.try_wait();
                }
                let Ok(Some(current)) = StackRecord::read(layout) else {
                    say!("The stack was stopped elsewhere (`webstack down`).");
                    return Ok(());
                };
                for node in &current.nodes {
                    if !webstack_net::process::alive(node.pid) && reported.insert(node.pid) {
                        say!("server {} (pid {}) stopped; `webstack start {}` starts it again", node.server, node.pid, node.server);
                    }
                }
                if current.nodes.iter().all(|n| !webstack_net::process::alive(n.pid)) {
                    say!("Every server has stopped.");
                    break;
                }
            }
        }
    }
    say!("Stopping stack {}...", record.name);
    let current = StackRecord::read(layout)?.unwrap_or_else(|| record.clone());
    let layout = layout.clone();
    let report =
        tokio::task::spawn_blocking(move || stop_stack(&layout, &current, false)).await??;
    for c in children.iter_mut() {
        let _ = c.try_wait();
    }
    say!(
        "Stopped {} server(s){}.",
        report.stopped.len() + report.killed.len(),
        if report.killed.is_empty() {
            String::new()
        } else {
            format!(
                "; killed after the grace period: {}",
                report.killed.join(", ")
            )
        }
    );
    Ok(())
}
