//! A log file that rotates itself between whole lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::policy::{batch_fits, needs_rotation, rotated_path, RotationPolicy};

/// An append-only log of whole lines that rotates by size. Not shared by itself: callers
/// that write from several threads keep it behind a lock, so a rotation cannot fall
/// between two halves of a line.
pub struct RotatingFile {
    path: PathBuf,
    policy: RotationPolicy,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it), counting what is already in it.
    pub fn open(path: &Path, policy: RotationPolicy) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            policy,
            file,
            size,
        })
    }

    /// Writes one or more whole lines (`line` should end with `\n`), rotating first if they
    /// would take the log past its limit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if needs_rotation(self.size, line.len() as u64, self.policy) {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Writes a batch of whole lines, rotating between lines wherever the batch would take
    /// the log past its limit (one write per file the batch spans).
    pub fn write_lines(&mut self, mut batch: &[u8]) -> io::Result<()> {
        while !batch.is_empty() {
            let n = batch_fits(self.size, batch, self.policy);
            if n == 0 {
                self.rotate()?;
                continue;
            }
            self.file.write_all(&batch[..n])?;
            self.size += n as u64;
            batch = &batch[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        shift(&self.path, self.policy.keep)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Renames `path` to `path.1`, `path.1` to `path.2` and so on, deleting the one that
/// would be number `keep`. A writer that still holds `path` open keeps writing into
/// `path.1` (the same file) until it reopens `path`, so no line is lost in between.
pub fn shift(path: &Path, keep: u32) -> io::Result<()> {
    if keep <= 1 {
        return remove_if_exists(path);
    }
    remove_if_exists(&rotated_path(path, keep - 1))?;
    for n in (1..keep - 1).rev() {
        rename_if_exists(&rotated_path(path, n), &rotated_path(path, n + 1))?;
    }
    rename_if_exists(path, &rotated_path(path, 1))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(dir: &Path, name: &str, keep: u32) -> Vec<String> {
        // Oldest first: name.{keep-1} … name.1, then name.
        let base = dir.join(name);
        let mut files: Vec<PathBuf> = (1..keep).rev().map(|n| rotated_path(&base, n)).collect();
        files.push(base);
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn regression_logs_rotate_by_size_and_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // Room for every line across the kept files: nothing may be missing or split.
        let policy = RotationPolicy {
            max_bytes: 1000,
            keep: 40,
        };
        let mut log = RotatingFile::open(&path, policy).unwrap();
        let written: Vec<String> = (0..2000)
            .map(|i| format!("line {i:05} {}", "x".repeat(i % 13)))
            .collect();
        for line in &written {
            log.write_line(format!("{line}\n").as_bytes()).unwrap();
        }
        assert_eq!(lines_of(dir.path(), "access.log", policy.keep), written);
        let rotated: Vec<u64> = (1..policy.keep)
            .filter_map(|n| std::fs::metadata(rotated_path(&path, n)).ok())
            .map(|m| m.len())
            .collect();
        assert!(rotated.len() >= 20, "only {} rotations", rotated.len());
        assert!(
            rotated.iter().all(|len| *len <= policy.max_bytes),
            "{rotated:?}"
        );
    }

    #[test]
    fn only_keep_files_remain_and_they_are_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let policy = RotationPolicy {
            max_bytes: 100,
            keep: 3,
        };
        let mut log = RotatingFile::open(&path, policy).unwrap();
        for i in 0..100 {
            log.write_line(format!("{i:09}\n").as_bytes()).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["node.log", "node.log.1", "node.log.2"]);
        let kept = lines_of(dir.path(), "node.log", 3);
        let expected: Vec<String> = (100 - kept.len()..100).map(|i| format!("{i:09}")).collect();
        assert_eq!(kept, expected, "the newest lines, contiguous and whole");
    }

    #[test]
    fn reopening_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "x".repeat(90) + "\n").unwrap();
        let policy = RotationPolicy {
            max_bytes: 100,
            keep: 2,
        };
        let mut log = RotatingFile::open(&path, policy).unwrap();
        log.write_line(b"0123456789\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0123456789\n");
        assert_eq!(
            std::fs::read_to_string(rotated_path(&path, 1))
                .unwrap()
                .len(),
            91
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let policy = RotationPolicy {
            max_bytes: 10,
            keep: 2,
        };
        let mut log = RotatingFile::open(&path, policy).unwrap();
        let long = "y".repeat(50) + "\n";
        log.write_line(long.as_bytes()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), long);
    }
}
