//! `webstack logs SERVER`: a server's log, optionally followed as it grows.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use webstack_node::StackLayout;

pub fn show(layout: &StackLayout, server: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let mut known: Vec<String> = std::fs::read_dir(layout.logs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".log")
                .map(str::to_string)
        })
        .collect();
    known.sort();
    if !known.iter().any(|k| k == server) {
        bail!(
            "the stack has no server {server:?} (servers: {})",
            known.join(", ")
        );
    }
    let path = layout.node_log(server);
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()?;
    if follow {
        let mut pos = file.stream_position()?;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(pos);
            if len < pos {
                pos = 0;
            }
            if len > pos {
                file.seek(SeekFrom::Start(pos))?;
                buf.clear();
                file.read_to_end(&mut buf)?;
                pos += buf.len() as u64;
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
