//! The access log, one line per request in nginx's "combined" format with the request id
//! and the time taken appended.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use webstack_logs::{RotatingFile, RotationPolicy};

/// A log file shared by all connections, rotated by size between lines. A std `Mutex` is
/// right here: the lock is held only for one write of an already formatted line (and, now
/// and then, a rotation), never across an `.await`.
pub struct AccessLog {
    file: Option<Mutex<RotatingFile>>,
}

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
            Some(p) => Some(Mutex::new(RotatingFile::open(p, rotation)?)),
            None => None,
        };
        Ok(AccessLog { file })
    }

    pub fn write(&self, e: &Entry<'_>) {
        let Some(file) = &self.file else { return };
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" \"{}\" {:.3}\n",
            e.peer.ip(),
            clf_time(SystemTime::now()),
            e.method,
            escape(e.target),
            e.version,
            e.status,
            e.bytes,
            escape(e.referer),
            escape(e.user_agent),
            e.request_id,
            e.took.as_secs_f64()
        );
        if let Ok(mut f) = file.lock() {
            let _ = f.write_line(line.as_bytes());
        }
    }
}

/// Quotes and control bytes would let a client forge log lines; escape them as nginx does.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out
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
        assert_eq!(escape("a\"b\n"), "a\\x22b\\x0A");
        assert_eq!(escape(""), "-");
    }
}
