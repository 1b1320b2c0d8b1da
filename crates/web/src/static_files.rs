//! Serves files from the root: content types, validators (ETag, Last-Modified, 304),
//! single byte ranges (206, 416) and gzip for text, as nginx's static module does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use webstack_net::http::{full, Body};

use crate::mime::{compressible, content_type};
use crate::path::{resolve_in_root, safe_segments, PathRejection};

/// Files smaller than this are sent as they are: gzip would save almost nothing.
const GZIP_MIN_BYTES: u64 = 256;

/// What a request path names under the root.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    File(PathBuf),
    /// No such file: the request goes on to the app server.
    NotFound,
    Rejected(PathRejection),
}

pub struct StaticFiles {
    /// Canonical, so that the symlink check compares like with like.
    root: PathBuf,
}

impl StaticFiles {
    pub fn new(root: &Path) -> std::io::Result<StaticFiles> {
        Ok(StaticFiles {
            root: std::fs::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the file for a request path; a folder stands for its `index.html`.
    pub fn lookup(&self, request_path: &str) -> Lookup {
        let segments = match safe_segments(request_path) {
            Ok(s) => s,
            Err(e) => return Lookup::Rejected(e),
        };
        // Dotfiles (.git, .env) are never served, as most servers are set up to do.
        if segments.iter().any(|s| s.starts_with('.')) {
            return Lookup::NotFound;
        }
        match resolve_in_root(&self.root, &segments) {
            Some(p) if p.is_file() => Lookup::File(p),
            Some(p) if p.is_dir() => {
                match resolve_in_root(&self.root, &[segments, vec!["index.html".into()]].concat()) {
                    Some(index) if index.is_file() => Lookup::File(index),
                    _ => Lookup::NotFound,
                }
            }
            _ => Lookup::NotFound,
        }
    }

    /// The response for a file found by `lookup`.
    pub async fn respond(
        &self,
        file: &Path,
        method: &Method,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = webstack_net::http::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: static files take GET and HEAD",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let meta = match tokio::fs::metadata(file).await {
            Ok(m) => m,
            Err(_) => return webstack_net::http::text(StatusCode::NOT_FOUND, "404 Not Found"),
        };
        let len = meta.len();
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime_secs = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let etag = format!("\"{mtime_secs:x}-{len:x}\"");
        let ctype = content_type(file);

        let mut builder = Response::builder()
            .header(header::CONTENT_TYPE, ctype)
            .header(header::LAST_MODIFIED, httpdate::fmt_http_date(mtime))
            .header(header::ACCEPT_RANGES, "bytes");
        let gzip = compressible(ctype) && len >= GZIP_MIN_BYTES && accepts_gzip(headers);
        if compressible(ctype) {
            builder = builder.header(header::VARY, "Accept-Encoding");
        }

        if not_modified(headers, &etag, mtime_secs) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .header(header::ETAG, &etag)
                .body(full(Vec::new()))
                .unwrap();
        }

        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| if_range_matches(headers, &etag))
            .map(|v| parse_range(v, len));
        match range {
            Some(RangeRequest::Unsatisfiable) => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(full(Vec::new()))
                    .unwrap();
            }
            Some(RangeRequest::Satisfiable(start, end)) => {
                let bytes = if method == Method::HEAD {
                    Vec::new()
                } else {
                    match read_range(file, start, end).await {
                        Ok(b) => b,
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
                    .header(header::ETAG, &etag)
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                    .header(header::CONTENT_LENGTH, end - start + 1)
                    .body(full(bytes))
                    .unwrap();
            }
            // No Range header, a multi-range or malformed one: the whole file (RFC 9110 lets
            // a server ignore a Range it does not support).
            Some(RangeRequest::Ignored) | None => {}
        }

        let content = match tokio::fs::read(file).await {
            Ok(c) => c,
            Err(_) => {
                return webstack_net::http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the file could not be read",
                )
            }
        };
        let (content, etag) = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = enc.write_all(&content);
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            // The compressed bytes differ from the file's, so the tag becomes weak, as in nginx.
            (enc.finish().unwrap_or_default(), format!("W/{etag}"))
        } else {
            (content, etag)
        };
        let length = content.len();
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            content
        };
        builder
            .status(StatusCode::OK)
            .header(header::ETAG, etag)
            .header(header::CONTENT_LENGTH, length)
            .body(full(body))
            .unwrap()
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
