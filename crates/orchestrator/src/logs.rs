//! `webstack logs [SERVER] [--grep TEXT]`: a server's log, or every server's, optionally
//! only the lines containing a text (case-insensitive), optionally followed as it grows.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use webstack_node::StackLayout;

pub fn show(
    layout: &StackLayout,
    server: Option<&str>,
    grep: Option<&str>,
    follow: bool,
    out: &mut dyn Write,
) -> Result<()> {
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
    let needle = grep.map(str::to_lowercase);
    let keep = |line: &str| {
        needle
            .as_ref()
            .is_none_or(|n| line.to_lowercase().contains(n))
    };
    let Some(server) = server else {
        if follow {
            bail!(
                "--follow follows one server's log: name the server (servers: {})",
                known.join(", ")
            );
        }
        // Every server's log, each line after its server's name, as `grep -H` does.
        for name in &known {
            let path = layout.node_log(name);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            for line in BufReader::new(file).lines() {
                let line = line.unwrap_or_default();
                if keep(&line) {
                    writeln!(out, "{name}: {line}")?;
                }
            }
        }
        out.flush()?;
        return Ok(());
    };
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
    let write = |buf: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
        if needle.is_none() {
            return out.write_all(buf);
        }
        for line in String::from_utf8_lossy(buf).lines() {
            if keep(line) {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    };
    write(&buf, out)?;
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
                write(&buf, out)?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
