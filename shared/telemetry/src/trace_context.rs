//! W3C Trace Context (`traceparent` / `tracestate`): honoured on the way in,
//! propagated on every upstream call, so one trace id follows a request
//! through the BFF and every service it calls.

use http::{HeaderMap, HeaderValue};
use rand::RngCore;

/// The trace a request belongs to, and the span id of this hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
    tracestate: Option<HeaderValue>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // All-zero ids are invalid; retry in the (practically impossible) case.
    while bytes.iter().all(|b| *b == 0) {
        rand::thread_rng().fill_bytes(&mut bytes);
    }
    bytes
}

/// Lowercase hex of exactly `N` bytes.
fn hex<const N: usize>(value: &str) -> Option<[u8; N]> {
    if value.len() != N * 2
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&value[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A hex id that is not all zeros (an all-zero trace or span id is invalid).
fn id<const N: usize>(value: &str) -> Option<[u8; N]> {
    hex::<N>(value).filter(|bytes| bytes.iter().any(|b| *b != 0))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

impl TraceContext {
    /// A new trace (sampled), for a request that came without one.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: random(),
            span_id: random(),
            sampled: true,
            tracestate: None,
        }
    }

    /// The context of an incoming request: its trace continued with a new
    /// span id for this hop, or a new trace when `traceparent` is missing or
    /// invalid (an invalid one is ignored, as the spec asks).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) else {
            return TraceContext::new_root();
        };
        match Self::parse(parent) {
            Some((trace_id, sampled)) => TraceContext {
                trace_id,
                span_id: random(),
                sampled,
                tracestate: headers
                    .get("tracestate")
                    .filter(|v| v.len() <= 512)
                    .cloned(),
            },
            None => TraceContext::new_root(),
        }
    }

    fn parse(value: &str) -> Option<([u8; 16], bool)> {
        let mut parts = value.trim().split('-');
        let version = hex::<1>(parts.next()?)?[0];
        let trace_id = id::<16>(parts.next()?)?;
        id::<8>(parts.next()?)?;
        let flags = hex::<1>(parts.next()?)?[0];
        // Version ff is invalid; version 00 has exactly four fields (later
        // versions may append more, which we ignore).
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        Some((trace_id, flags & 1 == 1))
    }

    /// A context for an outgoing call: same trace, new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random(),
            ..self.clone()
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The span id of this hop as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        to_hex(&self.span_id)
    }

    /// The `traceparent` header value naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id(),
            self.span_id(),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The `tracestate` received, passed on unchanged.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_str(traceparent).expect("header"),
        );
        h.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        h
    }

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let ctx = TraceContext::from_headers(&headers(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        assert_eq!(ctx.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(ctx.span_id(), "b7ad6b7169203331");
        assert_eq!(
            ctx.tracestate().map(|v| v.as_bytes()),
            Some(&b"vendor=abc"[..])
        );
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert_ne!(child.span_id(), ctx.span_id());
        let tp = child.traceparent();
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-01"),
            "{tp}"
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let unsampled = TraceContext::from_headers(&headers(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ));
        assert!(
            unsampled.traceparent().ends_with("-00"),
            "flags 00 is valid and kept"
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            let ctx = TraceContext::from_headers(&headers(bad));
            assert_ne!(
                ctx.trace_id(),
                "0af7651916cd43dd8448eb211c80319c",
                "{bad:?} must not be honoured"
            );
            assert!(
                ctx.tracestate().is_none(),
                "tracestate is dropped with an invalid traceparent"
            );
            assert_eq!(ctx.trace_id().len(), 32);
        }
    }
}
