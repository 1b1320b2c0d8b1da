//! W3C Trace Context (`traceparent: 00-<trace id>-<parent span id>-<flags>`): each hop
//! keeps the trace id, makes a span of its own, and tells the next hop that span is its
//! parent, so the collector can put the hops of one request back in order.

use hyper::header::{HeaderMap, HeaderValue};

use crate::http::random_u64;

pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This hop's span: 16 hex digits.
    pub span_id: String,
    /// The span of the hop before, if the request came with a valid `traceparent`.
    pub parent_id: Option<String>,
}

impl TraceContext {
    /// Continues the request's trace (or starts one) with a span for this hop, and
    /// rewrites `traceparent` so that whatever this hop forwards names it as the parent.
    pub fn enter(headers: &mut HeaderMap) -> TraceContext {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse);
        let span_id = format!("{:016x}", random_u64() | 1);
        let (trace_id, parent_id) = match parent {
            Some((trace, parent)) => (trace, Some(parent)),
            None => (
                format!("{:016x}{:016x}", random_u64(), random_u64() | 1),
                None,
            ),
        };
        let ctx = TraceContext {
            trace_id,
            span_id,
            parent_id,
        };
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_str(&ctx.header()).expect("hex is header text"),
        );
        ctx
    }

    /// The `traceparent` the next hop gets (sampled: every hop records its span).
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// (trace id, parent span id) of a valid version-00 `traceparent`. The spec's rules: hex
/// of the right lengths, lowercase, and neither id all zeros.
fn parse(v: &str) -> Option<(String, String)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    if version != "00" || parts.next().is_some() || !hex(trace, 32) || !hex(parent, 16) {
        return None;
    }
    if flags.len() != 2 || !flags.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((trace.to_string(), parent.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace_and_names_itself_the_next_parent() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let ctx = TraceContext::enter(&mut h);
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(
            h.get(TRACEPARENT).unwrap().to_str().unwrap(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", ctx.span_id)
        );
        let next = TraceContext::enter(&mut h);
        assert_eq!(next.trace_id, ctx.trace_id);
        assert_eq!(next.parent_id, Some(ctx.span_id));
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            let mut h = HeaderMap::new();
            h.insert(TRACEPARENT, HeaderValue::from_static(bad));
            let ctx = TraceContext::enter(&mut h);
            assert_eq!(ctx.parent_id, None, "{bad}");
            assert_eq!(ctx.trace_id.len(), 32);
        }
    }
}
