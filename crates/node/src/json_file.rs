//! The small JSON files of a stack's runtime state (`cluster.json`, each app server's
//! `release.json`): a missing or unreadable file reads as the default, and a write goes to
//! a file aside that is then renamed into place, so a reader never sees half of one.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn read_or_default<T: DeserializeOwned + Default>(path: &Path) -> T {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).expect("runtime state serialises"),
    )?;
    std::fs::rename(tmp, path)
}
