//! The command line: raw flags, parsed by clap. `main.rs` turns them into calls.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "webstack", version, about = "Run the web-infrastructure whiteboard for real: DNS, web servers, app servers and MySQL, one process per server on its own loopback address.")]
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
        /// A shipped design (simple, distributed, secured, scaled) or a design file.
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
    /// Print a server's log (`dns` for the name server).
    Logs {
        server: String,
        #[arg(long)]
        stack: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
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
    },
}
