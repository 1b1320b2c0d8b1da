//! Secrets of a stack, generated once and kept with mode 0600.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Creates the database password file if it does not exist: 24 random bytes from the
/// kernel, hex encoded, readable by the owner only.
pub fn ensure_password(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(hex.as_bytes())?;
    Ok(())
}
