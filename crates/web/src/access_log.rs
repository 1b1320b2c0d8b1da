//! The access log, one line per request in nginx's "combined" format with the request id
//! and the time taken appended. Lines are buffered and written in batches, as nginx's
//! `access_log … buffer=32k flush=…` does: when 32 KiB are waiting, when the web server's
//! flusher ticks (every 200 ms), and when the server stops. A batch is whole lines, so
//! rotation still falls between lines.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use webstack_logs::{RotatingFile, RotationPolicy};

/// A log file shared by all connections, rotated by size between lines. A std `Mutex` is
/// right here: the lock is held to append a formatted line (and, now and then, to write a
/// batch or rotate), never across an `.await`.
pub struct AccessLog {
    file: Option<Mutex<Buffered>>,
}

struct Buffered {
    file: RotatingFile,
    pending: Vec<u8>,
    /// The second and its common-log-format text.
    clf: (u64, String),
}

impl Buffered {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            // A full disk loses the batch but keeps the server serving.
            let _ = self.file.write_lines(&self.pending);
            self.pending.clear();
        }
    }
}

/// Bytes of lines held before they are written.
const BUFFER_BYTES: usize = 32 * 1024;
/// How often the web server writes what is held, however little.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// What one request leaves in the log.
pub struct Entry<'a> {
    pub peer: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub request_id: &'a str,
    pub took: Duration,
}

impl AccessLog {
    pub fn open(path: Option<&Path>, rotation: RotationPolicy) -> std::io::Result<AccessLog> {
        let file = match path {
            Some(p) => Some(Mutex::new(Buffered {
                file: RotatingFile::open(p, rotation)?,
                pending: Vec::with_capacity(BUFFER_BYTES + 1024),
                clf: (0, String::new()),
            })),
            None => None,
        };
        Ok(AccessLog { file })
    }

    /// Writes the lines held so far.
    pub fn flush(&self) {
        if let Some(file) = &self.file {
            file.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }

    pub fn write(&self, e: &Entry<'_>) {
        use std::io::Write;
        let Some(file) = &self.file else { return };
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        let f = &mut *f;
        // Formatted straight into the batch; the time text is made once a second.
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if f.clf.0 != secs || f.clf.1.is_empty() {
            f.clf = (secs, clf_time(now));
        }
        let _ = writeln!(
            f.pending,
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" \"{}\" {:.3}",
            e.peer.ip(),
            f.clf.1,
            e.method,
            Escaped(e.target),
            e.version,
            e.status,
            e.bytes,
            Escaped(e.referer),
            Escaped(e.user_agent),
            e.request_id,
            e.took.as_secs_f64()
        );
        if f.pending.len() >= BUFFER_BYTES {
            f.flush();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Quotes and control bytes would let a client forge log lines; escaped as nginx does
/// (and `-` for an empty field).
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c.is_control()) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            write!(f, "\\x{:02X}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `25/Nov/2026:21:48:52 +0000`, the time format of the common log format, in UTC.
pub fn clf_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_matches_known_dates() {
        assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            clf_time(UNIX_EPOCH + Duration::from_secs(1_795_643_332)),
            "25/Nov/2026:21:48:52 +0000"
        );
        assert_eq!(
            clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    #[test]
    fn forged_quotes_are_escaped() {
        assert_eq!(Escaped("a\"b\n").to_string(), "a\\x22b\\x0A");
        assert_eq!(Escaped("").to_string(), "-");
    }
}
