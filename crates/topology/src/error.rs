//! What can be wrong with a design, said so that a person can fix it.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong in a design file, found by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the design file.
    pub line: usize,
    /// The dotted key the problem is about, for example `servers.web1.app.database`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What would be right.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.key, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a design could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DesignError {
    #[error("cannot read design file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("no design named {name:?}: it is neither a file nor a shipped design (shipped: {})", shipped.join(", "))]
    UnknownDesign {
        name: String,
        shipped: Vec<&'static str>,
    },

    /// The file is not valid TOML, or a key or type does not fit the format. The TOML
    /// parser stops at the first such error, so this is always one problem.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// The file parsed, and validation found these problems (all of them).
    #[error("{}", render_invalid(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn render_invalid(file: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "{file}: {} problem{} in the design:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {file}:{p}"));
    }
    out
}
