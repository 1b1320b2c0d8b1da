//! The topology model: a design file (TOML) becomes a validated `Design`.
//!
//! This crate knows what a design may say and checks that it holds together. It knows
//! nothing of sockets, processes or which components webstack can already run: that is
//! the node's and the orchestrator's business.

mod error;
mod model;
mod raw;
mod shipped;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{DesignError, Problem};
pub use model::*;
pub use shipped::{shipped_names, shipped_source, DEFAULT_DESIGN, SHIPPED};
pub use validate::{parse_design, parse_duration, BUILTIN_CODEBASES, DNS_PROCESS_NAME};

/// Where a design came from, for messages and for copying it into a stack's state.
#[derive(Debug, Clone)]
pub struct LoadedDesign {
    pub design: Design,
    /// The TOML text, exactly as read.
    pub source: String,
    /// How messages name it: a path, or `shipped design simple`.
    pub label: String,
}

/// Loads a design by shipped name (`simple`) or by path to a TOML file. A name that is
/// also a file in the current folder is taken as the file.
pub fn load(name_or_path: &str) -> Result<LoadedDesign, DesignError> {
    let path = Path::new(name_or_path);
    if path.is_file() {
        return load_file(path);
    }
    if let Some(source) = shipped_source(name_or_path) {
        let label = format!("designs/{name_or_path}.toml");
        let base = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let design = parse_design(source, &label, &base)?;
        return Ok(LoadedDesign {
            design,
            source: source.to_string(),
            label,
        });
    }
    if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
        return Err(DesignError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    Err(DesignError::UnknownDesign {
        name: name_or_path.to_string(),
        shipped: shipped_names(),
    })
}

/// Loads a design file from disk; relative paths in it start at its folder.
pub fn load_file(path: &Path) -> Result<LoadedDesign, DesignError> {
    let source = std::fs::read_to_string(path).map_err(|source| DesignError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file_source(path, source)
}

/// Parses `source` as the text of the design file at `path` (relative paths in it start
/// at the file's folder): a stack's design as it was when it started, whatever the file
/// holds now.
pub fn parse_file_source(path: &Path, source: String) -> Result<LoadedDesign, DesignError> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let label = path.display().to_string();
    let design = parse_design(&source, &label, &base)?;
    Ok(LoadedDesign {
        design,
        source,
        label,
    })
}
