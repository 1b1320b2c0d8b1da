//! The command line: raw flags, parsed by clap. `main.rs` turns them into calls.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "webstack",
    version,
    about = "Run the web-infrastructure whiteboard for real: DNS, web servers, app servers and MySQL, one process per server on its own loopback address."
)]
pub struct Cli {
    /// The state directory (default: $WEBSTACK_STATE_DIR, else ~/.local/state/webstack).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Start every server of a design and wait until all are healthy.
    Up {
        /// A shipped design (simple, distributed, secured, scaled, ha) or a design file.
        #[arg(default_value = webstack_topology::DEFAULT_DESIGN)]
        design: String,
        /// Return once the stack is healthy and leave it running.
        #[arg(short, long)]
        detach: bool,
        /// Move the design's addresses to this /24 of the loopback range (127.X.Y.0/24),
        /// to run a second copy of a design beside the first.
        #[arg(long, value_name = "127.X.Y.0/24")]
        subnet: Option<String>,
        /// Seconds to wait for every component to become healthy.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Stop a stack. Data and logs are kept unless --purge is given.
    Down {
        #[arg(long)]
        stack: Option<String>,
        /// Also delete the stack's data, logs and secrets.
        #[arg(long)]
        purge: bool,
    },
    /// Show a stack's servers, components, listeners, pids and live health.
    Status {
        #[arg(long)]
        stack: Option<String>,
        /// Print JSON for tools instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a server's log (`dns` for the name server), or every server's.
    Logs {
        /// The server; without it, every server's log, each line after its server's name.
        server: Option<String>,
        #[arg(long)]
        stack: Option<String>,
        /// Only the lines that contain this text (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
    },
    /// Show the alerts the design's collector has pending or firing.
    Alerts {
        #[arg(long)]
        stack: Option<String>,
        /// Print JSON for tools instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the servers a failed request crossed (its error trace), by its request id
    /// (the X-Request-Id header of the answer).
    Trace {
        request_id: String,
        #[arg(long)]
        stack: Option<String>,
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send bounded load through the stack and report throughput, latency percentiles,
    /// errors by kind and each backend's share.
    Bench {
        /// The URL (its host is resolved through the stack's DNS); default: the site's home.
        url: Option<String>,
        #[arg(long)]
        stack: Option<String>,
        #[arg(short, long, default_value_t = 8)]
        connections: usize,
        /// How long to run, in seconds (default 10 unless --requests is given).
        #[arg(short, long, conflicts_with = "requests")]
        duration: Option<f64>,
        /// How many requests to send in all.
        #[arg(short = 'n', long)]
        requests: Option<u64>,
        /// The HTTP method; POST sends a small guestbook message as JSON (to /api/messages
        /// when no URL is given).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Try a refused connection once more after this many milliseconds (to ride out a
        /// floating IP's takeover) instead of failing the request at once.
        #[arg(long, value_name = "MS")]
        retry_refused: Option<u64>,
        /// Send at a fixed rate (requests per second over all connections), with latency
        /// measured from when each request was due (corrected for coordinated omission).
        #[arg(long, value_name = "N")]
        rate: Option<f64>,
        /// For an https:// URL: trust the certificates in this PEM file (default: the
        /// stack's own CA).
        #[arg(long, value_name = "FILE")]
        cacert: Option<PathBuf>,
        /// Print JSON for tools instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Kill a server (SIGKILL to its node and everything it runs): the server is lost.
    Kill {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Stop a server gracefully.
    Stop {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Start a stopped or killed server again.
    Start {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Freeze a server (SIGSTOP): it keeps its sockets but answers nothing.
    Pause {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Thaw a paused server (SIGCONT).
    Resume {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Roll a new release of the codebase out to every app server, one at a time: drain
    /// it, let its requests finish, restart it on the new release, wait for its health
    /// check, put it back. A release that fails its health check is rolled back and the
    /// deploy stops.
    Deploy {
        /// A folder with the new codebase (for a design that runs a codebase of yours).
        folder: Option<PathBuf>,
        /// The release's label, sent in every answer of the built-in app (X-App-Version);
        /// default: the folder's VERSION file, else its name.
        #[arg(long, value_name = "LABEL")]
        version: Option<String>,
        #[arg(long)]
        stack: Option<String>,
        /// Seconds a new release may take to pass its health check before it is rolled back.
        #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
        health_timeout: f64,
        /// Seconds a drained server's requests in flight may take to finish.
        #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
        drain_timeout: f64,
        /// Print the report as JSON for tools (the steps still go to standard error).
        #[arg(long)]
        json: bool,
    },
    /// Apply a changed design to the running stack without dropping a connection: load
    /// balancer backends, weights, algorithm, health checks; web upstreams; firewall
    /// rules; new servers start and removed ones stop. A change that needs a running
    /// server restarted is refused, with what to run instead.
    Reload {
        /// The changed design (a shipped name or a file); default: the stack's own.
        design: Option<String>,
        #[arg(long)]
        stack: Option<String>,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Prove a running stack survives faults: a steady load (GETs, and writes whose
    /// acknowledgements are recorded) while servers are killed, stopped or paused one at a
    /// time and brought back; then a verdict per fault and on the writes. Exits 1 if an
    /// acknowledged write was lost or applied twice, or the site did not recover.
    Chaos {
        #[arg(long)]
        stack: Option<String>,
        /// Seconds to run (faults and load), at most 3600.
        #[arg(short, long, default_value_t = 60.0)]
        duration: f64,
        /// The seed of the fault sequence: the same seed repeats a run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only this server is hit (default: any server of the design).
        #[arg(long)]
        server: Option<String>,
        /// The kinds of fault, comma separated: kill, stop, pause.
        #[arg(long, default_value = "kill,stop,pause")]
        faults: String,
        /// Seconds each fault lasts before the server is brought back.
        #[arg(long, default_value_t = 3.0)]
        hold: f64,
        /// Requests per second of the load (every fifth a write).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Print the report as JSON for tools (the steps go to standard error).
        #[arg(long)]
        json: bool,
    },
    /// The database cluster: status, promotion, rebuilding a replaced primary.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Inspect load balancers and change backends' admin states at runtime.
    Lb {
        #[command(subcommand)]
        command: LbCommand,
    },
    /// A server's firewall: the effective rules and the design fact each comes from
    /// (`show`, with live counters when the stack runs), or an nftables ruleset for a real
    /// host (`export`).
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// Review a design: single points of failure, security and operational gaps, the tier
    /// that saturates first, and the availability its structure gives.
    Check {
        #[arg(default_value = webstack_topology::DEFAULT_DESIGN)]
        design: String,
        /// text for people, json for tools.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Exit with status 3 if a finding is at least this severe (info, low, medium,
        /// high, critical): for CI.
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<String>,
        /// Each server's availability, in percent.
        #[arg(long, default_value_t = 99.9)]
        availability: f64,
        /// The request mix of the capacity model.
        #[arg(long, default_value = "static=20,reads=70,writes=10")]
        mix: String,
    },
    /// Draw the design: servers, tiers, the way from the user through DNS, replication,
    /// firewalls and agents.
    Diagram {
        #[arg(default_value = webstack_topology::DEFAULT_DESIGN)]
        design: String,
        #[arg(long, default_value = "svg", value_parser = ["svg", "mermaid", "dot"])]
        format: String,
        /// Colour servers by the health of the running stack of this design.
        #[arg(long)]
        live: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a design file and report every problem in it.
    Validate {
        #[arg(default_value = webstack_topology::DEFAULT_DESIGN)]
        design: String,
    },
    /// List the shipped designs.
    Designs,
    /// Run one server of a design in this process (what `up` starts for each server; also
    /// how a design runs on real hosts).
    Node {
        /// The server to run, or `dns` for the design's name server.
        server: String,
        #[arg(long)]
        design: String,
        #[arg(long, value_name = "127.X.Y.0/24")]
        subnet: Option<String>,
        /// Write this server's output (and its children's) into FILE, rotated by size as
        /// the design's [logs] says. `up` passes the server's node.log.
        #[arg(long, value_name = "FILE")]
        log_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// The server's rules in order, each with its reason and (running stack) its counter.
    Show {
        server: String,
        /// A design instead of the running stack.
        #[arg(long)]
        design: Option<String>,
        #[arg(long)]
        stack: Option<String>,
    },
    /// The server's policy as an nftables ruleset (`nft -f`).
    Export {
        server: String,
        #[arg(long)]
        design: Option<String>,
        #[arg(long)]
        stack: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Every load balancer's backends: state, requests in flight, errors, last check.
    Status {
        #[arg(long)]
        stack: Option<String>,
        /// Only this load balancer.
        #[arg(long)]
        lb: Option<String>,
    },
    /// Set a backend's state: ready, drain (no new requests) or maint (no traffic, no checks).
    Set {
        backend: String,
        state: String,
        #[arg(long)]
        stack: Option<String>,
        /// Only on this load balancer (default: every one that has the backend).
        #[arg(long)]
        lb: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Each database server: role, GTID position, replication lag, semi-sync state.
    Status {
        #[arg(long)]
        stack: Option<String>,
    },
    /// Promote a replica to primary without restarting the stack.
    Promote {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// A planned switchover of the live primary to a replica: writes pause briefly (the app
    /// servers hold them), the replica catches up and takes writes, the old primary
    /// becomes its replica. No acknowledged write is lost and none fails.
    Switchover {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
    /// Rebuild a fenced former primary (or a replica) as a fresh replica of the primary.
    Rebuild {
        server: String,
        #[arg(long)]
        stack: Option<String>,
    },
}
