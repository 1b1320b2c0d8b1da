//! When a log rotates and what its old files are called: pure decisions, no I/O.

use std::path::{Path, PathBuf};

/// How big a log may grow and how many files of it are kept, the live one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A log rotates before a line would take it past this size.
    pub max_bytes: u64,
    /// Files kept: the live log plus `keep - 1` rotated ones (at least 1, the live one).
    pub keep: u32,
}

impl RotationPolicy {
    /// The documented default: 64 MiB × 3 files, at most 192 MiB for each log.
    pub const DEFAULT: RotationPolicy = RotationPolicy {
        max_bytes: 64 * 1024 * 1024,
        keep: 3,
    };
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy::DEFAULT
    }
}

/// Whether a log of `current` bytes rotates before a line of `incoming` bytes is written.
/// An empty log never rotates, so a line longer than the limit is still written whole.
pub fn needs_rotation(current: u64, incoming: u64, policy: RotationPolicy) -> bool {
    current > 0 && current.saturating_add(incoming) > policy.max_bytes
}

/// How many bytes of `batch` (whole lines, each ending in `\n`) go into a log of
/// `current` bytes before it must rotate: the longest run of whole lines that fits. 0 means
/// rotate first; an empty log takes at least its first line, however long.
pub fn batch_fits(current: u64, batch: &[u8], policy: RotationPolicy) -> usize {
    let room = policy.max_bytes.saturating_sub(current);
    if batch.len() as u64 <= room {
        return batch.len();
    }
    let within = &batch[..room as usize];
    match within.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if current == 0 => batch
            .iter()
            .position(|b| *b == b'\n')
            .map_or(batch.len(), |i| i + 1),
        None => 0,
    }
}

/// The `n`th rotated file of `path` (`n` ≥ 1): `access.log.1` is the newest.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_between_lines_to_fit() {
        let p = RotationPolicy {
            max_bytes: 10,
            keep: 3,
        };
        assert_eq!(batch_fits(0, b"aaa\nbbb\n", p), 8);
        // 4 bytes of room: the first line fits, the second waits for the next file.
        assert_eq!(batch_fits(6, b"aaa\nbbb\n", p), 4);
        assert_eq!(batch_fits(8, b"aaa\nbbb\n", p), 0);
        // A line longer than the limit goes whole into an empty file.
        assert_eq!(batch_fits(0, b"0123456789abc\nx\n", p), 14);
    }

    #[test]
    fn rotates_only_before_a_line_that_would_pass_the_limit() {
        let p = RotationPolicy {
            max_bytes: 100,
            keep: 3,
        };
        assert!(!needs_rotation(0, 500, p), "an empty log takes any line");
        assert!(!needs_rotation(60, 40, p));
        assert!(needs_rotation(60, 41, p));
        assert!(needs_rotation(100, 1, p));
    }

    #[test]
    fn rotated_names_are_numbered() {
        assert_eq!(
            rotated_path(Path::new("/s/access.log"), 2),
            PathBuf::from("/s/access.log.2")
        );
    }
}
