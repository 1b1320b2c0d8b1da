//! The orchestrator's record of a stack (`stack.json`) and how a command finds the stack
//! it is about.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use webstack_node::StackLayout;

/// What `up` writes before it starts anything, so a crashed `up` still leaves enough to
/// clean up by pid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackRecord {
    pub name: String,
    /// What nodes are started with: a shipped design's name or a design file's absolute path.
    pub design: String,
    /// The design file's text as the stack runs it (taken at `up` and at each `reload`):
    /// a file edited since changes nothing until it is reloaded. `None` for a shipped
    /// design.
    #[serde(default)]
    pub source: Option<String>,
    /// The /24 the design was moved to, as `127.X.Y`, if it was.
    pub subnet: Option<String>,
    /// The `up` process that watches a stack in the foreground; `None` when detached.
    pub supervisor_pid: Option<u32>,
    pub nodes: Vec<NodeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub server: String,
    pub pid: u32,
}

impl StackRecord {
    pub fn read(layout: &StackLayout) -> Result<Option<StackRecord>> {
        let path = layout.stack_file();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged; remove it to start over", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn write(&self, layout: &StackLayout) -> Result<()> {
        let path = layout.stack_file();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The names of the stacks that have a record in the state directory.
pub fn recorded_stacks(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("stacks")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("stack.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The stack a command is about: the one named, or the only one there is.
pub fn select_stack(state_dir: &Path, name: Option<&str>) -> Result<(StackLayout, StackRecord)> {
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let stacks = recorded_stacks(state_dir);
            match stacks.as_slice() {
                [] => bail!(
                    "no stack is running (state directory {}); start one with `webstack up`",
                    state_dir.display()
                ),
                [one] => one.clone(),
                many => bail!(
                    "several stacks are running ({}); name one with --stack NAME",
                    many.join(", ")
                ),
            }
        }
    };
    let layout = StackLayout::new(state_dir, &name);
    match StackRecord::read(&layout)? {
        Some(record) => Ok((layout, record)),
        None => bail!(
            "no stack named {name:?} is running (state directory {})",
            state_dir.display()
        ),
    }
}

/// The stack a `logs` command is about: like `select_stack`, but a stopped stack counts
/// too, since its logs stay until `down --purge`.
pub fn select_stack_logs(state_dir: &Path, name: Option<&str>) -> Result<StackLayout> {
    if let Ok((layout, _)) = select_stack(state_dir, name) {
        return Ok(layout);
    }
    let with_logs: Vec<String> = std::fs::read_dir(state_dir.join("stacks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("logs").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| name.is_none_or(|wanted| wanted == n))
        .collect();
    match with_logs.as_slice() {
        [one] => Ok(StackLayout::new(state_dir, one)),
        [] => bail!("no stack has logs in {}", state_dir.display()),
        many => bail!(
            "several stacks have logs ({}); name one with --stack NAME",
            many.join(", ")
        ),
    }
}
