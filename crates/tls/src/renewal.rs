//! When a certificate is renewed: when a third of its lifetime is left, as Caddy and
//! Let's Encrypt's clients do. Pure: time is passed in.

use std::time::{Duration, SystemTime};

/// The moment a certificate valid from `not_before` to `not_after` should be renewed.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_after - lifetime / 3
}

/// Whether a certificate needs renewing at `now`.
pub fn needs_renewal(now: SystemTime, not_before: SystemTime, not_after: SystemTime) -> bool {
    now >= renew_at(not_before, not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn renews_with_a_third_of_the_lifetime_left() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let end = start + 12 * HOUR;
        assert_eq!(renew_at(start, end), start + 8 * HOUR);
        assert!(!needs_renewal(
            start + 8 * HOUR - Duration::from_secs(1),
            start,
            end
        ));
        assert!(needs_renewal(start + 8 * HOUR, start, end));
        assert!(needs_renewal(end + HOUR, start, end), "an expired one too");
        // 90 days, as Let's Encrypt issues: renew at day 60.
        let end = start + 90 * 24 * HOUR;
        assert_eq!(renew_at(start, end), start + 60 * 24 * HOUR);
    }
}
