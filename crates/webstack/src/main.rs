//! The `webstack` binary: parses the command line and calls the library crates. Errors
//! become a message and an exit code in one place, `main`.

mod cli;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Commands, DbCommand, FirewallCommand, LbCommand};
use webstack_orchestrator as orchestrator;

/// Exit codes: 0 success, 1 a failure while running, 2 a bad design or bad arguments
/// (clap also exits with 2 for unknown flags), 3 `check --fail-on` found a finding at or
/// above the given severity.
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`webstack status | head`). Not by restoring SIGPIPE's default action: every
    // command writes to sockets too (probes, bench, chaos, the nodes' servers), whose
    // peers may reset at any moment, and a write (writev has no MSG_NOSIGNAL) to a reset
    // connection would kill the process. SIGPIPE stays ignored, as Rust sets it, and a
    // print that fails with EPIPE ends the process with the status a shell reports for
    // SIGPIPE (141).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let runtime = match runtime_for(&cli.command) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {e:#}");
            if e.downcast_ref::<webstack_topology::DesignError>().is_some()
                || e.downcast_ref::<orchestrator::CertificateProblems>()
                    .is_some()
                || e.downcast_ref::<UsageError>().is_some()
            {
                ExitCode::from(2)
            } else if e.downcast_ref::<CheckFailed>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(1)
            }
        }
    };
    // A node's output goes through a pipe into its rotating log: let the last lines (the
    // error just printed among them) reach the file before the process ends.
    webstack_logs::finish_capture(Duration::from_secs(2));
    code
}

/// Threads of a node's runtime unless `WEBSTACK_NODE_THREADS` says otherwise.
const NODE_THREADS: usize = 1;

/// The runtime a command runs on. A node serves all its components on one event loop by
/// default, as an nginx worker or HAProxy with `nbthread 1` do: the servers of a design
/// are processes of their own already, and tokio's work-stealing scheduler cost the load
/// balancer about a third more CPU per request than the single-threaded one, even with
/// one worker (bench/lb-vs-haproxy). `WEBSTACK_NODE_THREADS=N` gives a node N worker
/// threads, for a host with cores to spare. The other commands (bench, chaos and the
/// rest) keep a worker per core.
fn runtime_for(command: &Commands) -> Result<tokio::runtime::Runtime, String> {
    let threads = match (command, std::env::var("WEBSTACK_NODE_THREADS")) {
        (Commands::Node { .. }, Ok(v)) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "WEBSTACK_NODE_THREADS is {v:?}; it takes a whole number of threads, 1 or more (unset, a node runs {NODE_THREADS})"
                ))
            }
        },
        (Commands::Node { .. }, Err(_)) => NODE_THREADS,
        _ => 0,
    };
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn run(cli: Cli) -> Result<()> {
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(webstack_node::default_state_dir);
    match cli.command {
        Commands::Up {
            design,
            detach,
            subnet,
            timeout,
        } => {
            let subnet = subnet
                .as_deref()
                .map(orchestrator::parse_subnet)
                .transpose()?;
            let exe = std::env::current_exe()
                .context("cannot find the webstack binary to start nodes with")?;
            orchestrator::up(orchestrator::UpOptions {
                design,
                subnet,
                detach,
                timeout: Duration::from_secs(timeout),
                state_dir,
                exe,
            })
            .await
        }
        Commands::Down { stack, purge } => {
            let (layout, record) = orchestrator::select_stack(&state_dir, stack.as_deref())?;
            let report = tokio::task::spawn_blocking(move || {
                orchestrator::stop_stack(&layout, &record, purge)
            })
            .await??;
            println!(
                "Stopped {} server(s).",
                report.stopped.len() + report.killed.len()
            );
            if !report.killed.is_empty() {
                println!(
                    "Killed after the grace period: {}",
                    report.killed.join(", ")
                );
            }
            Ok(())
        }
        Commands::Status { stack, json } => {
            let ((layout, record), design) = running_design(&state_dir, stack.as_deref())?;
            let status = orchestrator::collect_status(&design, &layout, &record, &state_dir).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "Stack {} ({}), state in {}",
                    status.stack,
                    design.domain,
                    layout.root().display()
                );
                print!("{}", orchestrator::render_status(&status));
                if let Some(line) = orchestrator::monitor::status_line(&design).await {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Commands::Logs {
            server,
            stack,
            grep,
            follow,
        } => {
            let layout = orchestrator::select_stack_logs(&state_dir, stack.as_deref())?;
            tokio::task::spawn_blocking(move || {
                orchestrator::show_logs(
                    &layout,
                    server.as_deref(),
                    grep.as_deref(),
                    follow,
                    &mut std::io::stdout(),
                )
            })
            .await?
        }
        Commands::Alerts { stack, json } => {
            let (_, design) = running_design(&state_dir, stack.as_deref())?;
            let alerts = orchestrator::monitor::alerts(&design).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                print!("{}", orchestrator::monitor::render_alerts(&alerts, now));
            }
            Ok(())
        }
        Commands::Trace {
            request_id,
            stack,
            json,
        } => {
            let (_, design) = running_design(&state_dir, stack.as_deref())?;
            let (spans, text) = orchestrator::monitor::trace(&design, &request_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&spans)?);
            } else {
                print!("{text}");
            }
            Ok(())
        }
        Commands::Bench {
            url,
            stack,
            connections,
            duration,
            requests,
            method,
            retry_refused,
            rate,
            cacert,
            json,
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            let mut target = orchestrator::resolve_target(&design, url.as_deref()).await?;
            if url.is_none() && method.eq_ignore_ascii_case("POST") {
                // The site's home takes no POST; the guestbook does.
                target.path = "/api/messages".into();
            }
            let limit = match (requests, duration) {
                (Some(n), _) => webstack_bench::Limit::Requests(n),
                (None, Some(d)) if d.is_finite() && d > 0.0 => {
                    webstack_bench::Limit::Duration(Duration::from_secs_f64(d))
                }
                (None, Some(d)) => {
                    anyhow::bail!("--duration {d} is not a positive number of seconds")
                }
                (None, None) => webstack_bench::Limit::Duration(Duration::from_secs(10)),
            };
            let method = method.to_ascii_uppercase();
            let body = (method == "POST")
                .then(|| bytes_of(r#"{"author":"bench","message":"hello from webstack bench"}"#));
            let config = webstack_bench::BenchConfig {
                target: target.addr,
                host: target.host.clone(),
                path: target.path,
                method,
                body,
                connections,
                limit,
                timeout: Duration::from_secs(30),
                retry_refused: retry_refused.map(Duration::from_millis),
                rate,
                tls: target
                    .tls
                    .then(|| {
                        let ca = cacert.unwrap_or_else(|| layout.tls_dir().join("ca.crt"));
                        webstack_bench::TlsTarget::trusting(&ca, &target.host)
                    })
                    .transpose()?,
            };
            let report = webstack_bench::run(config.clone()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", webstack_bench::render(&report, &config));
            }
            Ok(())
        }
        Commands::Kill { server, stack } => {
            fault(
                orchestrator::Fault::Kill,
                &state_dir,
                stack.as_deref(),
                &server,
            )
            .await
        }
        Commands::Stop { server, stack } => {
            fault(
                orchestrator::Fault::Stop,
                &state_dir,
                stack.as_deref(),
                &server,
            )
            .await
        }
        Commands::Start { server, stack } => {
            fault(
                orchestrator::Fault::Start,
                &state_dir,
                stack.as_deref(),
                &server,
            )
            .await
        }
        Commands::Pause { server, stack } => {
            fault(
                orchestrator::Fault::Pause,
                &state_dir,
                stack.as_deref(),
                &server,
            )
            .await
        }
        Commands::Resume { server, stack } => {
            fault(
                orchestrator::Fault::Resume,
                &state_dir,
                stack.as_deref(),
                &server,
            )
            .await
        }
        Commands::Deploy {
            folder,
            version,
            stack,
            health_timeout,
            drain_timeout,
            json,
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            let seconds = |flag: &str, v: f64| {
                if v.is_finite() && v > 0.0 && v <= 3600.0 {
                    Ok(Duration::from_secs_f64(v))
                } else {
                    Err(anyhow::Error::new(UsageError(format!(
                        "--{flag} {v} is not a number of seconds from above 0 to 3600"
                    ))))
                }
            };
            let opts = orchestrator::deploy::DeployOptions {
                version,
                codebase: folder,
                health_timeout: seconds("health-timeout", health_timeout)?,
                drain_timeout: seconds("drain-timeout", drain_timeout)?,
            };
            let release = orchestrator::deploy::release_of(&design, &opts)
                .map_err(|e| anyhow::Error::new(UsageError(format!("{e:#}"))))?;
            let say = |line: String| {
                if json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            };
            let outcome =
                orchestrator::deploy::deploy(&design, &layout, &release, &opts, &say).await;
            if json {
                let report = match &outcome {
                    Ok(r) => Some(r),
                    Err(e) => e
                        .downcast_ref::<orchestrator::deploy::DeployFailed>()
                        .map(|f| &f.report),
                };
                if let Some(r) = report {
                    println!("{}", serde_json::to_string_pretty(r)?);
                }
            }
            outcome.map(|_| ())
        }
        Commands::Chaos {
            stack,
            duration,
            seed,
            server,
            faults,
            hold,
            rate,
            json,
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            let usage = |m: String| anyhow::Error::new(UsageError(m));
            let secs = |flag: &str, v: f64, max: f64| {
                if v.is_finite() && v > 0.0 && v <= max {
                    Ok(Duration::from_secs_f64(v))
                } else {
                    Err(usage(format!(
                        "--{flag} {v} is not a number of seconds from above 0 to {max}"
                    )))
                }
            };
            let kinds = faults
                .split(',')
                .map(|k| {
                    webstack_chaos::Kind::parse(k.trim()).ok_or_else(|| {
                        usage(format!("{k:?} is not a fault; use kill, stop or pause"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let servers: Vec<String> = match &server {
                Some(s) if design.server(s).is_none() => {
                    return Err(usage(format!(
                        "the design has no server {s:?} (servers: {})",
                        design
                            .servers
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                Some(s) => vec![s.clone()],
                None => design.servers.iter().map(|s| s.name.clone()).collect(),
            };
            if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
                return Err(usage(format!(
                    "--rate {rate} is not a number of requests per second from above 0 to 10000"
                )));
            }
            let target = orchestrator::resolve_target(&design, None).await?;
            let tls = target
                .tls
                .then(|| {
                    webstack_bench::TlsTarget::trusting(
                        &layout.tls_dir().join("ca.crt"),
                        &target.host,
                    )
                })
                .transpose()?;
            let exe = std::env::current_exe().context("cannot find the webstack binary")?;
            let config = webstack_chaos::ChaosConfig {
                duration: secs("duration", duration, 3600.0)?,
                seed,
                kinds,
                servers,
                hold: secs("hold", hold, 600.0)?,
                rate,
                target: target.addr,
                host: target.host,
                tls,
            };
            let say = |line: String| {
                if json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            };
            let stack_ref = webstack_chaos::Stack {
                design: &design,
                layout: &layout,
                state_dir: &state_dir,
                exe: &exe,
            };
            let report = webstack_chaos::run(stack_ref, config, &say).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", webstack_chaos::render(&report, &design.name));
            }
            let problems = report.problems();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(webstack_chaos::ChaosFailed(problems).into())
            }
        }
        Commands::Reload {
            design,
            stack,
            dry_run,
        } => {
            let (layout, _) = orchestrator::select_stack(&state_dir, stack.as_deref())?;
            let exe = std::env::current_exe().context("cannot find the webstack binary")?;
            orchestrator::reload::reload(
                design.as_deref(),
                &state_dir,
                &layout,
                &exe,
                dry_run,
                &|line| println!("{line}"),
            )
            .await
        }
        Commands::Db {
            command: DbCommand::Status { stack },
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            print!("{}", orchestrator::db::status(&design, &layout).await?);
            Ok(())
        }
        Commands::Db {
            command: DbCommand::Promote { server, stack },
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            for line in orchestrator::db::promote(&design, &layout, &server).await? {
                println!("{line}");
            }
            Ok(())
        }
        Commands::Db {
            command: DbCommand::Switchover { server, stack },
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            let (said, _) = orchestrator::db::switchover(&design, &layout, &server).await?;
            for line in said {
                println!("{line}");
            }
            Ok(())
        }
        Commands::Db {
            command: DbCommand::Rebuild { server, stack },
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            let exe = std::env::current_exe().context("cannot find the webstack binary")?;
            for line in
                orchestrator::db::rebuild(&design, &layout, &state_dir, &exe, &server).await?
            {
                println!("{line}");
            }
            Ok(())
        }
        Commands::Firewall { command } => {
            let (server, design_name, stack, export) = match command {
                FirewallCommand::Show {
                    server,
                    design,
                    stack,
                } => (server, design, stack, false),
                FirewallCommand::Export {
                    server,
                    design,
                    stack,
                } => (server, design, stack, true),
            };
            // A named design is read as written; otherwise the running stack's (with its
            // addresses and live counters).
            let (design, counters) = match design_name {
                Some(name) => (orchestrator::load_design(&name, None)?.design, None),
                None => {
                    let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
                    let counters = webstack_node::read_status(&layout.node_status(&server))
                        .and_then(|s| s.firewall);
                    (design, counters)
                }
            };
            if design.server(&server).is_none() {
                let names: Vec<&str> = design.servers.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!(
                    "design {} has no server {server:?} (servers: {})",
                    design.name,
                    names.join(", ")
                );
            }
            let Some(policy) = webstack_firewall::derive(&design, &server) else {
                anyhow::bail!(
                    "server {server} has no firewall in design {}: add [servers.{server}.firewall]",
                    design.name
                );
            };
            if export {
                print!("{}", webstack_firewall::nftables(&policy));
            } else {
                print!("{}", policy.show(counters.as_deref()));
            }
            Ok(())
        }
        Commands::Lb {
            command: LbCommand::Status { stack, lb },
        } => {
            let ((layout, _), design) = running_design(&state_dir, stack.as_deref())?;
            print!(
                "{}",
                orchestrator::lb::render(&design, &layout, lb.as_deref()).await?
            );
            Ok(())
        }
        Commands::Lb {
            command:
                LbCommand::Set {
                    backend,
                    state,
                    stack,
                    lb,
                },
        } => {
            let (_, design) = running_design(&state_dir, stack.as_deref())?;
            for line in
                orchestrator::lb::set_state(&design, lb.as_deref(), &backend, &state).await?
            {
                println!("{line}");
            }
            Ok(())
        }
        Commands::Check {
            design,
            format,
            fail_on,
            availability,
            mix,
        } => {
            let threshold = fail_on
                .as_deref()
                .map(|s| {
                    webstack_review::Severity::parse(s).with_context(|| {
                        format!("--fail-on {s:?}: use info, low, medium, high or critical")
                    })
                })
                .transpose()?;
            if !(availability > 0.0 && availability < 100.0) {
                anyhow::bail!(
                    "--availability {availability} must be a percentage between 0 and 100"
                );
            }
            let mix =
                webstack_review::Mix::parse(&mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
            let design = orchestrator::load_design(&design, None)?.design;
            let findings = webstack_review::review(&design, &mix);
            let estimate = webstack_review::estimate(&design, availability / 100.0);
            if format == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"design": design.name, "findings": findings, "availability": estimate})
                    )?
                );
            } else {
                print!("{}", webstack_review::render(&design, &findings, &estimate));
            }
            if let Some(t) = threshold {
                let failing = findings.iter().filter(|f| f.severity >= t).count();
                if failing > 0 {
                    return Err(CheckFailed(format!("{failing} finding(s) at or above {t}")).into());
                }
            }
            Ok(())
        }
        Commands::Diagram {
            design,
            format,
            live,
            output,
        } => {
            let loaded = orchestrator::load_design(&design, None)?;
            let mut health = std::collections::HashMap::new();
            let mut drawn = loaded.design;
            if live {
                let ((layout, record), running) = running_design(&state_dir, Some(&drawn.name))
                    .context("--live needs the design's stack to be running")?;
                let status =
                    orchestrator::collect_status(&running, &layout, &record, &state_dir).await;
                for s in status.servers {
                    health.insert(
                        s.name.clone(),
                        s.alive && s.components.iter().all(|c| c.health.healthy),
                    );
                }
                drawn = running;
            }
            let text = match format.as_str() {
                "mermaid" => webstack_review::diagram::mermaid(&drawn),
                "dot" => webstack_review::diagram::dot(&drawn),
                _ => webstack_review::diagram::svg(&drawn, &health),
            };
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Commands::Validate { design } => {
            let loaded = orchestrator::load_design(&design, None)?;
            let d = &loaded.design;
            println!(
                "{}: design {} for {} is valid: {} server(s)",
                loaded.label,
                d.name,
                d.domain,
                d.servers.len()
            );
            for s in &d.servers {
                let kinds: Vec<String> = s.components().iter().map(|k| k.to_string()).collect();
                println!("  {:<10} {:<15} {}", s.name, s.address, kinds.join(", "));
            }
            orchestrator::check_certificates(d)?;
            Ok(())
        }
        Commands::Designs => {
            for (name, source) in webstack_topology::SHIPPED {
                let description =
                    webstack_topology::parse_design(source, name, std::path::Path::new("."))
                        .map(|d| d.description.unwrap_or_default())
                        .unwrap_or_default();
                println!("{name:<12} {description}");
            }
            Ok(())
        }
        Commands::Node {
            server,
            design,
            subnet,
            log_file,
        } => {
            let subnet = subnet
                .as_deref()
                .map(orchestrator::parse_subnet)
                .transpose()?;
            let design = orchestrator::node_design(&state_dir, &design, subnet)?;
            if let Some(path) = &log_file {
                webstack_logs::capture_output(path, webstack_node::log_rotation(&design))
                    .with_context(|| format!("cannot write the log {}", path.display()))?;
            }
            let layout = webstack_node::StackLayout::new(&state_dir, &design.name);
            // SIGHUP: reload the design the stack's record names now (`webstack reload`
            // updated it), with the stack's addresses.
            let (reloads, designs) = tokio::sync::mpsc::unbounded_channel();
            let (reload_dir, stack_name) = (state_dir.clone(), design.name.clone());
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot handle SIGHUP")?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let loaded = orchestrator::select_stack(&reload_dir, Some(&stack_name))
                        .and_then(|(_, record)| orchestrator::record_design(&record));
                    match loaded {
                        Ok(d) => {
                            eprintln!("reload: SIGHUP: applying the design {}", d.name);
                            let _ = reloads.send(d);
                        }
                        Err(e) => eprintln!(
                            "reload: SIGHUP, but the stack's design cannot be loaded; keeping the running one: {e:#}"
                        ),
                    }
                }
            });
            let shutdown = CancellationToken::new();
            let signals = shutdown.clone();
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                signals.cancel();
            });
            let opts = webstack_node::NodeOptions {
                design,
                server,
                layout,
                cache_dir: webstack_node::default_cache_dir(),
            };
            webstack_node::run(opts, shutdown, designs).await
        }
    }
}

/// The running stack a command is about, and its design with the stack's addresses.
fn running_design(
    state_dir: &std::path::Path,
    stack: Option<&str>,
) -> Result<(
    (webstack_node::StackLayout, orchestrator::StackRecord),
    webstack_topology::Design,
)> {
    let (layout, record) = orchestrator::select_stack(state_dir, stack)?;
    let design = orchestrator::record_design(&record)?;
    Ok(((layout, record), design))
}

async fn fault(
    fault: orchestrator::Fault,
    state_dir: &std::path::Path,
    stack: Option<&str>,
    server: &str,
) -> Result<()> {
    let ((layout, _), design) = running_design(state_dir, stack)?;
    let exe = std::env::current_exe().context("cannot find the webstack binary")?;
    println!(
        "{}",
        orchestrator::apply_fault(fault, &design, &layout, state_dir, &exe, server).await?
    );
    Ok(())
}

fn bytes_of(s: &str) -> webstack_bench::Bytes {
    webstack_bench::Bytes::from(s.to_string())
}

/// Arguments that cannot be acted on (exit status 2, like clap's own usage errors).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `check --fail-on` found what it was told to fail on.
#[derive(Debug)]
struct CheckFailed(String);

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "check failed: {}", self.0)
    }
}

impl std::error::Error for CheckFailed {}
