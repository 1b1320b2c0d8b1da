//! The heartbeat on the wire: one UDP datagram of text,
//! `webstack-vrrp/1 GROUP FROM PRIORITY INTERVAL_MS SENT_US MAC`, where MAC is the
//! HMAC-SHA256 (hex) of everything before it under the stack's secret. A heartbeat is
//! taken only if its MAC is right, it names the address it came from, it was sent within
//! `MAX_AGE` of now, and it is newer than the last one taken from that member, so a
//! stranger's heartbeat and a recorded one played back change nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use ring::hmac;

/// Heartbeats older (or further in the future) than this are refused: members share a
/// clock on one host, and NTP keeps real hosts far closer.
pub const MAX_AGE_US: u64 = 2_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The floating IP's name.
    pub group: String,
    pub from: IpAddr,
    pub priority: u8,
    pub interval_ms: u64,
    /// Microseconds since the Unix epoch, when it was sent.
    pub sent_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    Malformed,
    /// Not signed with this stack's secret.
    BadMac,
    /// For another floating IP.
    OtherGroup(String),
    /// The datagram's source is not the member it names.
    Spoofed {
        claims: IpAddr,
        came_from: IpAddr,
    },
    /// Sent too long ago (or ahead of the clock).
    Stale,
    /// Not newer than the last heartbeat taken from that member.
    Replayed,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::Malformed => write!(f, "not a heartbeat"),
            Reject::BadMac => write!(f, "not signed with this stack's secret"),
            Reject::OtherGroup(g) => write!(f, "for floating IP {g:?}"),
            Reject::Spoofed { claims, came_from } => {
                write!(f, "claims to be from {claims} but came from {came_from}")
            }
            Reject::Stale => write!(f, "sent more than 2 s away from now"),
            Reject::Replayed => write!(f, "not newer than the last one taken (a replay)"),
        }
    }
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

pub fn encode(h: &Heartbeat, secret: &[u8]) -> Vec<u8> {
    let body = format!(
        "webstack-vrrp/1 {} {} {} {} {}",
        h.group, h.from, h.priority, h.interval_ms, h.sent_us
    );
    let tag = hmac::sign(&key(secret), body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{body} {hex}").into_bytes()
}

/// What a member remembers of the others' heartbeats.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<IpAddr, u64>,
}

/// Checks a datagram from `came_from` for `group`, at `now_us`.
pub fn decode(
    datagram: &[u8],
    came_from: IpAddr,
    group: &str,
    secret: &[u8],
    now_us: u64,
    guard: &mut ReplayGuard,
) -> Result<Heartbeat, Reject> {
    let text = std::str::from_utf8(datagram).map_err(|_| Reject::Malformed)?;
    let (body, hex) = text.rsplit_once(' ').ok_or(Reject::Malformed)?;
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or(Reject::Malformed)?;
    hmac::verify(&key(secret), body.as_bytes(), &tag).map_err(|_| Reject::BadMac)?;
    let parts: Vec<&str> = body.split(' ').collect();
    let [magic, g, from, priority, interval, sent] = parts[..] else {
        return Err(Reject::Malformed);
    };
    if magic != "webstack-vrrp/1" {
        return Err(Reject::Malformed);
    }
    let h = Heartbeat {
        group: g.to_string(),
        from: from.parse().map_err(|_| Reject::Malformed)?,
        priority: priority.parse().map_err(|_| Reject::Malformed)?,
        interval_ms: interval.parse().map_err(|_| Reject::Malformed)?,
        sent_us: sent.parse().map_err(|_| Reject::Malformed)?,
    };
    if h.group != group {
        return Err(Reject::OtherGroup(h.group));
    }
    if h.from != came_from {
        return Err(Reject::Spoofed {
            claims: h.from,
            came_from,
        });
    }
    if h.sent_us.abs_diff(now_us) > MAX_AGE_US {
        return Err(Reject::Stale);
    }
    if guard
        .last
        .get(&h.from)
        .is_some_and(|last| h.sent_us <= *last)
    {
        return Err(Reject::Replayed);
    }
    guard.last.insert(h.from, h.sent_us);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    fn hb(sent_us: u64) -> Heartbeat {
        Heartbeat {
            group: "vip".into(),
            from: "127.10.3.10".parse().unwrap(),
            priority: 200,
            interval_ms: 100,
            sent_us,
        }
    }

    fn check(d: &[u8], guard: &mut ReplayGuard, now: u64) -> Result<Heartbeat, Reject> {
        decode(d, "127.10.3.10".parse().unwrap(), "vip", SECRET, now, guard)
    }

    #[test]
    fn a_signed_fresh_heartbeat_is_taken_once() {
        let mut g = ReplayGuard::default();
        let d = encode(&hb(10_000_000), SECRET);
        assert_eq!(check(&d, &mut g, 10_000_100), Ok(hb(10_000_000)));
        // The same datagram again, and an older one, are replays.
        assert_eq!(check(&d, &mut g, 10_000_200), Err(Reject::Replayed));
        let older = encode(&hb(9_999_000), SECRET);
        assert_eq!(check(&older, &mut g, 10_000_300), Err(Reject::Replayed));
        assert!(check(&encode(&hb(10_100_000), SECRET), &mut g, 10_100_000).is_ok());
    }

    #[test]
    fn strangers_forgers_and_old_recordings_are_refused() {
        let mut g = ReplayGuard::default();
        let wrong = encode(&hb(10_000_000), b"another stack's secret");
        assert_eq!(check(&wrong, &mut g, 10_000_000), Err(Reject::BadMac));
        let mut tampered = encode(&hb(10_000_000), SECRET);
        let at = tampered.iter().position(|b| *b == b'2').unwrap();
        tampered[at] = b'9'; // priority 200 → 900: the MAC no longer matches
        assert_eq!(check(&tampered, &mut g, 10_000_000), Err(Reject::BadMac));
        let recorded = encode(&hb(1_000_000), SECRET);
        assert_eq!(check(&recorded, &mut g, 10_000_000), Err(Reject::Stale));
        let d = encode(&hb(10_000_000), SECRET);
        assert!(matches!(
            decode(
                &d,
                "127.10.3.66".parse().unwrap(),
                "vip",
                SECRET,
                10_000_000,
                &mut g
            ),
            Err(Reject::Spoofed { .. })
        ));
        assert_eq!(check(b"hello", &mut g, 0), Err(Reject::Malformed));
    }
}
