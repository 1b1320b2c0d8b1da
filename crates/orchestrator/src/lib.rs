//! The orchestrator: `up`, `down`, `status` and `logs` for a whole stack.
//!
//! It starts each server as a `webstack node` process, keeps its record of the stack in
//! the state directory, probes components in their own protocols, and stops processes
//! only by the pids it recorded.
//!
//! Architecture invariant: the orchestrator runs no component itself; everything that
//! serves traffic runs in a node process, so killing a node is losing that server.

pub mod db;
pub mod deploy;
mod down;
mod faults;
mod health;
pub mod lb;
mod logs;
pub mod monitor;
mod operator;
mod record;
pub mod reload;
mod secrets;
mod signals;
mod status;
mod target;
mod up;

use anyhow::{bail, Result};
use webstack_topology::LoadedDesign;

pub use down::{stop_stack, DownReport};
pub use faults::{apply as apply_fault, Fault};
pub use health::Health;
pub use logs::show as show_logs;
pub use record::{recorded_stacks, select_stack, select_stack_logs, NodeRecord, StackRecord};
pub use status::{
    collect as collect_status, process_names, render as render_status, table, StackStatus,
};
pub use target::{parse_url, resolve as resolve_target, Target};
pub use up::{up, UpOptions};

/// Loads a design by name or path and moves it to another /24 of the loopback range if
/// asked. Every command that needs a stack's design goes through here, so `up`, the nodes
/// and `status` agree on its addresses.
pub fn load_design(name_or_path: &str, subnet: Option<[u8; 3]>) -> Result<LoadedDesign> {
    let mut loaded = webstack_topology::load(name_or_path)?;
    if let Some(prefix) = subnet {
        loaded.design.relocate(prefix);
    }
    operator::set_from(&loaded.design);
    Ok(loaded)
}

/// The design a running stack runs, with its addresses: the text its record keeps (see
/// [`StackRecord::source`]), else its shipped design.
pub fn record_design(record: &StackRecord) -> Result<webstack_topology::Design> {
    let subnet = record.subnet.as_deref().map(parse_subnet).transpose()?;
    let mut design = match &record.source {
        Some(text) => {
            webstack_topology::parse_file_source(
                std::path::Path::new(&record.design),
                text.clone(),
            )?
            .design
        }
        None => return Ok(load_design(&record.design, subnet)?.design),
    };
    if let Some(prefix) = subnet {
        design.relocate(prefix);
    }
    operator::set_from(&design);
    Ok(design)
}

/// The design a node runs: the one its stack's record keeps when it was started for that
/// stack (`up`, `start`, `reload` start nodes with the record's design), else `design` as
/// given (a node run by hand on a real host).
pub fn node_design(
    state_dir: &std::path::Path,
    design: &str,
    subnet: Option<[u8; 3]>,
) -> Result<webstack_topology::Design> {
    let given = load_design(design, subnet)?.design;
    match select_stack(state_dir, Some(&given.name)) {
        Ok((_, record)) if record.design == design && record.source.is_some() => {
            record_design(&record)
        }
        _ => Ok(given),
    }
}

/// The certificate files a design names are missing, unreadable, malformed, out of date,
/// mismatched with their keys or for other names: each line names the file and the key.
#[derive(Debug)]
pub struct CertificateProblems(pub Vec<String>);

impl std::fmt::Display for CertificateProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the design's certificates cannot be served:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CertificateProblems {}

/// Checks every certificate file the design names (`validate` and `up` run this).
pub fn check_certificates(design: &webstack_topology::Design) -> Result<(), CertificateProblems> {
    let problems = webstack_node::check_certificate_files(design);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CertificateProblems(problems))
    }
}

/// Parses `127.X.Y`, `127.X.Y.0` or `127.X.Y.0/24`.
pub fn parse_subnet(text: &str) -> Result<[u8; 3]> {
    let base = text.strip_suffix("/24").unwrap_or(text);
    let parts: Vec<&str> = base.split('.').collect();
    let octets: Option<Vec<u8>> = parts.iter().map(|p| p.parse().ok()).collect();
    match (parts.len(), octets) {
        (3, Some(o)) | (4, Some(o)) if o[0] == 127 && (o.len() == 3 || o[3] == 0) => {
            Ok([o[0], o[1], o[2]])
        }
        _ => bail!(
            "--subnet {text:?} is not a /24 of the loopback range; write it like 127.20.0.0/24"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(parse_subnet("127.20.3.0/24").unwrap(), [127, 20, 3]);
        assert_eq!(parse_subnet("127.20.3").unwrap(), [127, 20, 3]);
        assert!(parse_subnet("10.0.0.0/24").is_err());
        assert!(parse_subnet("127.20.3.5/24").is_err());
        assert!(parse_subnet("127.300.3.0").is_err());
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[["a".to_string(), "bb".into()], ["ccc".into(), "d".into()]]);
        assert_eq!(t, "a    bb\nccc  d\n");
    }
}
