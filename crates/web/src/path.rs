//! Maps a request path to a file under the root, refusing every way out of it.
//!
//! Pure string work first (no file system): the path is percent-decoded once, and any
//! `..` segment, backslash, NUL or encoded slash is refused. The file system check after it
//! (`resolve_in_root`) canonicalises the result and refuses symlinks that lead outside.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Why a request path cannot name a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRejection {
    /// The path tries to leave the root or smuggle a separator: 400.
    Unsafe(&'static str),
}

/// The relative path a request names, as safe segments; `Ok(vec![])` is the root itself.
pub fn safe_segments(request_path: &str) -> Result<Vec<String>, PathRejection> {
    if !request_path.starts_with('/') {
        return Err(PathRejection::Unsafe("the path does not start with '/'"));
    }
    let mut segments = Vec::new();
    for raw in request_path.split('/') {
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathRejection::Unsafe("the path is not UTF-8"))?;
        if decoded.contains('\0') {
            return Err(PathRejection::Unsafe("the path holds a NUL byte"));
        }
        if decoded.contains('\\') {
            return Err(PathRejection::Unsafe("the path holds a backslash"));
        }
        if decoded.contains('/') {
            return Err(PathRejection::Unsafe("the path holds an encoded slash"));
        }
        match decoded.as_ref() {
            "" | "." => continue,
            ".." => return Err(PathRejection::Unsafe("the path climbs out with '..'")),
            _ => segments.push(decoded.into_owned()),
        }
    }
    Ok(segments)
}

/// The file under `root` that the segments name, if it exists and does not lead out of the
/// root through a symlink. `root` must already be canonical.
pub fn resolve_in_root(root: &Path, segments: &[String]) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for s in segments {
        path.push(s);
    }
    let canonical = std::fs::canonicalize(&path).ok()?;
    canonical.starts_with(root).then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_segments() {
        assert_eq!(safe_segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(
            safe_segments("/static/style.css").unwrap(),
            vec!["static", "style.css"]
        );
        assert_eq!(safe_segments("/a/./b//c").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(
            safe_segments("/hello%20world.txt").unwrap(),
            vec!["hello world.txt"]
        );
    }

    #[test]
    fn every_escape_is_refused() {
        for path in [
            "/../etc/passwd",
            "/static/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/static%2f..%2f..%2fsecret",
            "/..%5csecret",
            "/..\\secret",
            "/file%00.txt",
            "/%c0%ae%c0%ae/secret",
            "relative/path",
        ] {
            assert!(safe_segments(path).is_err(), "{path} was accepted");
        }
    }
}
