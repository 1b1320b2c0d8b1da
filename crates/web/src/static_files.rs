//! Serves files from the root: content types, validators (ETag, Last-Modified, 304),
//! single byte ranges (206, 416) and gzip for text, as nginx's static module does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use webstack_net::http::{full, Body};
use webstack_net::sendfile::Sendfile;

use crate::mime::{compressible, content_type};
use crate::path::{resolve_in_root, safe_segments, PathRejection};

/// Files smaller than this are sent as they are: gzip would save almost nothing.
const GZIP_MIN_BYTES: u64 = 256;

/// What a request path names under the root.
#[derive(Debug, Clone)]
pub enum Lookup {
    File(Arc<FileInfo>),
    /// No such file: the request goes on to the app server.
    NotFound,
    Rejected(PathRejection),
}

/// A file as the cache knows it: what its response headers say, and for files up to
/// `CACHE_MAX_BYTES` their bytes (and gzip of them), so a hit costs no system call.
#[derive(Debug)]
pub struct FileInfo {
    pub path: PathBuf,
    len: u64,
    mtime: SystemTime,
    mtime_secs: u64,
    etag: String,
    last_modified: HeaderValue,
    ctype: &'static str,
    bytes: Option<Bytes>,
    gzip: Option<Bytes>,
    /// The open file `bytes` were read from, for files sent by sendfile(2).
    open: Option<OpenFile>,
}

/// Files of at least this size go to plain HTTP/1.1 clients by sendfile(2), straight
/// from the page cache; smaller ones leave with their headers in one write.
const SENDFILE_MIN_BYTES: u64 = 16 * 1024;
/// Descriptors the cache keeps open for sendfile at most (nginx's `open_file_cache max`);
/// past it files are sent from memory. Process-wide, as the descriptor limit is.
const SENDFILE_MAX_OPEN: usize = 1024;
static SENDFILE_OPEN: AtomicUsize = AtomicUsize::new(0);

/// A descriptor counted against `SENDFILE_MAX_OPEN` while the cache holds it.
#[derive(Debug)]
struct OpenFile(Arc<File>);

impl OpenFile {
    fn hold(file: File) -> Option<OpenFile> {
        let held = SENDFILE_OPEN.fetch_add(1, Ordering::Relaxed);
        if held >= SENDFILE_MAX_OPEN {
            SENDFILE_OPEN.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(OpenFile(Arc::new(file)))
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        SENDFILE_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FileInfo {
    /// Reads a file's metadata (and, when small, its bytes) once.
    fn load(path: PathBuf) -> std::io::Result<FileInfo> {
        let meta = std::fs::metadata(&path)?;
        let len = meta.len();
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime_secs = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ctype = content_type(&path);
        // The bytes are read through the descriptor that sendfile will use, so both are
        // the same file even when it is replaced meanwhile.
        let (bytes, open) = if len <= CACHE_MAX_BYTES {
            let mut file = File::open(&path)?;
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf)?;
            let open = (len >= SENDFILE_MIN_BYTES)
                .then(|| OpenFile::hold(file))
                .flatten();
            (Some(Bytes::from(buf)), open)
        } else {
            (None, None)
        };
        let gzip = bytes
            .as_ref()
            .filter(|b| compressible(ctype) && b.len() as u64 >= GZIP_MIN_BYTES)
            .map(|b| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = enc.write_all(b);
                Bytes::from(enc.finish().unwrap_or_default())
            });
        Ok(FileInfo {
            etag: format!("\"{mtime_secs:x}-{len:x}\""),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(mtime))
                .expect("HTTP dates are header text"),
            path,
            len,
            mtime,
            mtime_secs,
            ctype,
            bytes,
            gzip,
            open,
        })
    }

    /// Whether the file on disk is still the one loaded (same size and mtime).
    fn current(&self) -> bool {
        std::fs::metadata(&self.path)
            .is_ok_and(|m| m.len() == self.len && m.modified().unwrap_or(UNIX_EPOCH) == self.mtime)
    }
}

/// Files up to this size are kept in memory.
const CACHE_MAX_BYTES: u64 = 256 * 1024;
/// How long a cached lookup is trusted before one stat checks it again (nginx's
/// `open_file_cache_valid`, whose default is 60 s; 1 s here, so edits show at once).
const CACHE_VALID: Duration = Duration::from_secs(1);
/// Paths remembered at most; past it the cache starts over.
const CACHE_MAX_ENTRIES: usize = 10_000;

pub struct StaticFiles {
    /// Canonical, so that the symlink check compares like with like.
    root: PathBuf,
    /// Request path → what it resolved to, and when that was last checked.
    cache: Mutex<HashMap<String, (Instant, Lookup)>>,
}

impl StaticFiles {
    pub fn new(root: &Path) -> std::io::Result<StaticFiles> {
        Ok(StaticFiles {
            root: std::fs::canonicalize(root)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the file for a request path; a folder stands for its `index.html`. Answers
    /// from the cache when it was checked within `CACHE_VALID`.
    pub fn lookup(&self, request_path: &str) -> Lookup {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((checked, found)) = cache.get_mut(request_path) {
            if checked.elapsed() < CACHE_VALID {
                return found.clone();
            }
            // One stat tells whether a cached file changed; a change, or a path that
            // was missing, is resolved again.
            if let Lookup::File(f) = found {
                if f.current() {
                    *checked = Instant::now();
                    return found.clone();
                }
            }
        }
        let found = self.resolve(request_path);
        if cache.len() >= CACHE_MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(request_path.to_string(), (Instant::now(), found.clone()));
        found
    }

    fn resolve(&self, request_path: &str) -> Lookup {
        let segments = match safe_segments(request_path) {
            Ok(s) => s,
            Err(e) => return Lookup::Rejected(e),
        };
        // Dotfiles (.git, .env) are never served, as most servers are set up to do.
        if segments.iter().any(|s| s.starts_with('.')) {
            return Lookup::NotFound;
        }
        let path = match resolve_in_root(&self.root, &segments) {
            Some(p) if p.is_file() => p,
            Some(p) if p.is_dir() => {
                match resolve_in_root(&self.root, &[segments, vec!["index.html".into()]].concat()) {
                    Some(index) if index.is_file() => index,
                    _ => return Lookup::NotFound,
                }
            }
            _ => return Lookup::NotFound,
        };
        match FileInfo::load(path) {
            Ok(info) => Lookup::File(Arc::new(info)),
            Err(_) => Lookup::NotFound,
        }
    }

    /// The response for a file found by `lookup`. On a connection that can (`sendfile`),
    /// the body of a large cached file is offered to go by sendfile(2).
    pub async fn respond(
        &self,
        file: &FileInfo,
        method: &Method,
        headers: &HeaderMap,
        sendfile: Option<&Sendfile>,
    ) -> Response<Body> {
        let offer = |body: &Bytes, offset: u64| {
            if let (Some(sendfile), Some(open)) = (sendfile, &file.open) {
                sendfile.offer(body, open.0.clone(), offset);
            }
        };
        if method != Method::GET && method != Method::HEAD {
            let mut r = webstack_net::http::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: static files take GET and HEAD",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let len = file.len;
        let etag = &file.etag;
        let ctype = file.ctype;
        let mut builder = Response::builder()
            .header(header::CONTENT_TYPE, ctype)
            .header(header::LAST_MODIFIED, file.last_modified.clone())
            .header(header::ACCEPT_RANGES, "bytes");
        let gzip = compressible(ctype) && len >= GZIP_MIN_BYTES && accepts_gzip(headers);
        if compressible(ctype) {
            builder = builder.header(header::VARY, "Accept-Encoding");
        }

        if not_modified(headers, etag, file.mtime_secs) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .header(header::ETAG, etag)
                .body(full(Bytes::new()))
                .unwrap();
        }

        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| if_range_matches(headers, etag))
            .map(|v| parse_range(v, len));
        match range {
            Some(RangeRequest::Unsatisfiable) => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(full(Bytes::new()))
                    .unwrap();
            }
            Some(RangeRequest::Satisfiable(start, end)) => {
                let bytes = if method == Method::HEAD {
                    Bytes::new()
                } else if let Some(b) = &file.bytes {
                    let part = b.slice(start as usize..=end as usize);
                    offer(&part, start);
                    part
                } else {
                    match read_range(&file.path, start, end).await {
                        Ok(b) => Bytes::from(b),
                        Err(_) => {
                            return webstack_net::http::text(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "500 Internal Server Error: the file could not be read",
                            )
                        }
                    }
                };
                return builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::ETAG, etag)
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                    .header(header::CONTENT_LENGTH, end - start + 1)
                    .body(full(bytes))
                    .unwrap();
            }
            // No Range header, a multi-range or malformed one: the whole file (RFC 9110 lets
            // a server ignore a Range it does not support).
            Some(RangeRequest::Ignored) | None => {}
        }

        if let (true, Some(gz)) = (gzip, &file.gzip) {
            // The compressed bytes differ from the file's, so the tag becomes weak, as in nginx.
            return builder
                .status(StatusCode::OK)
                .header(header::CONTENT_ENCODING, "gzip")
                .header(header::ETAG, format!("W/{etag}"))
                .header(header::CONTENT_LENGTH, gz.len())
                .body(full(if method == Method::HEAD {
                    Bytes::new()
                } else {
                    gz.clone()
                }))
                .unwrap();
        }
        let builder = builder
            .status(StatusCode::OK)
            .header(header::ETAG, etag)
            .header(header::CONTENT_LENGTH, len);
        if method == Method::HEAD {
            return builder.body(full(Bytes::new())).unwrap();
        }
        if let Some(b) = &file.bytes {
            offer(b, 0);
            return builder.body(full(b.clone())).unwrap();
        }
        // A large file is streamed from disk, never read whole into memory.
        match tokio::fs::File::open(&file.path).await {
            Ok(f) => {
                let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024)
                    .map_ok(Frame::data)
                    .map_err(|e| Box::new(e) as webstack_net::http::BoxError);
                builder
                    .body(BodyExt::boxed(StreamBody::new(stream)))
                    .unwrap()
            }
            Err(_) => webstack_net::http::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the file could not be read",
            ),
        }
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn strip_weak(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
fn not_modified(headers: &HeaderMap, etag: &str, mtime_secs: u64) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.trim() == "*" || inm.split(',').any(|t| strip_weak(t) == etag);
    }
    if let Some(ims) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(since) = httpdate::parse_http_date(ims) {
            let since = since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return mtime_secs <= since;
        }
    }
    false
}

/// A Range is honoured only if If-Range is absent or names the current (strong) tag.
fn if_range_matches(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// Inclusive first and last byte.
    Satisfiable(u64, u64),
    Unsatisfiable,
    Ignored,
}

/// Parses a single `bytes=` range against a file of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        (true, true) => return RangeRequest::Ignored,
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            Err(_) => return RangeRequest::Ignored,
        },
        (false, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return RangeRequest::Ignored;
            };
            let end = if last.is_empty() {
                len.saturating_sub(1)
            } else {
                match last.parse::<u64>() {
                    Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                    _ => return RangeRequest::Ignored,
                }
            };
            (start, end)
        }
    };
    if len == 0 || parsed.0 >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Satisfiable(parsed.0, parsed.1)
    }
}

async fn read_range(file: &Path, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buf = vec![0u8; (end - start + 1) as usize];
    f.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            RangeRequest::Satisfiable(0, 9)
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeRequest::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeRequest::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=50-500", 100),
            RangeRequest::Satisfiable(50, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignored);
        assert_eq!(parse_range("bytes=9-3", 100), RangeRequest::Ignored);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignored);
    }
}
