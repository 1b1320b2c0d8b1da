//! The verdict of a chaos run, free of I/O: from what each request saw and when each
//! fault was injected and repaired, the failed requests and the longest gap per fault,
//! and whether the site recovered.

use std::time::Duration;

use serde::Serialize;

/// One request of the load, in milliseconds from the run's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub sent_ms: f64,
    pub done_ms: f64,
    pub ok: bool,
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultWindow {
    pub fault: String,
    pub server: String,
    pub injected_ms: f64,
    /// When the server was brought back (started or resumed).
    pub repaired_ms: f64,
    /// Whether it came back healthy.
    pub came_back: bool,
    /// When the site served without a failure again for the recovery bound; `None` if it
    /// did not within the patience.
    pub recovered_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultVerdict {
    #[serde(flatten)]
    pub window: FaultWindow,
    /// Requests sent from the injection to the recovery (or the next fault).
    pub requests: u64,
    pub failed: u64,
    /// The longest time with no request succeeding while at least one failed.
    pub longest_gap_ms: f64,
}

/// Failed requests and the longest gap among the requests sent in `[from, to)`.
pub fn judge(requests: &[Request], from_ms: f64, to_ms: f64) -> (u64, u64, f64) {
    let mut inside: Vec<&Request> = requests
        .iter()
        .filter(|r| r.sent_ms >= from_ms && r.sent_ms < to_ms)
        .collect();
    inside.sort_by(|a, b| a.done_ms.total_cmp(&b.done_ms));
    let failed = inside.iter().filter(|r| !r.ok).count() as u64;
    // Walk the answers in the order they came: a gap opens at the last success before a
    // failure and closes at the next success.
    let mut last_ok = from_ms;
    let mut open: Option<f64> = None;
    let mut longest: f64 = 0.0;
    for r in &inside {
        if r.ok {
            if let Some(since) = open.take() {
                longest = longest.max(r.done_ms - since);
            }
            last_ok = r.done_ms;
        } else if open.is_none() {
            open = Some(last_ok);
        }
    }
    if let (Some(since), Some(last)) = (open, inside.last()) {
        longest = longest.max(last.done_ms - since);
    }
    (inside.len() as u64, failed, longest)
}

/// When the site recovered after `repaired_ms`: the first success that starts a run of
/// successes lasting `bound` with no failure answered in it.
pub fn recovered(requests: &[Request], repaired_ms: f64, bound: Duration) -> Option<f64> {
    let bound = bound.as_secs_f64() * 1000.0;
    let mut after: Vec<&Request> = requests
        .iter()
        .filter(|r| r.done_ms >= repaired_ms)
        .collect();
    after.sort_by(|a, b| a.done_ms.total_cmp(&b.done_ms));
    let mut start: Option<f64> = None;
    for r in after {
        match (r.ok, start) {
            (true, None) => start = Some(r.done_ms),
            (true, Some(s)) if r.done_ms - s >= bound => return Some(s),
            (false, _) => start = None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sent: f64, done: f64, ok: bool) -> Request {
        Request {
            sent_ms: sent,
            done_ms: done,
            ok,
        }
    }

    #[test]
    fn failures_and_the_gap_inside_a_window() {
        let reqs = [
            r(0.0, 5.0, true),
            r(10.0, 15.0, true),
            r(20.0, 21.0, false),
            r(30.0, 31.0, false),
            r(40.0, 45.0, true),
            r(200.0, 201.0, false),
        ];
        let (n, failed, gap) = judge(&reqs, 0.0, 100.0);
        assert_eq!((n, failed), (5, 2));
        assert_eq!(gap, 30.0);
        // A window that ends while failing counts the open gap to its last answer.
        let (_, failed, gap) = judge(&reqs, 150.0, 300.0);
        assert_eq!((failed, gap), (1, 51.0));
    }

    #[test]
    fn recovery_needs_a_run_of_successes() {
        let reqs = [
            r(0.0, 100.0, true),
            r(0.0, 200.0, false),
            r(0.0, 300.0, true),
            r(0.0, 900.0, true),
            r(0.0, 1400.0, true),
        ];
        assert_eq!(recovered(&reqs, 50.0, Duration::from_secs(1)), Some(300.0));
        assert_eq!(recovered(&reqs, 50.0, Duration::from_secs(5)), None);
    }
}
