//! W3C Trace Context and Baggage, on OpenTelemetry's propagators: honoured
//! on the way in, propagated on every upstream call, so one trace id follows
//! a request through the BFF and every service it calls.
//!
//! Two modes, one type. With the OpenTelemetry layer installed (an exporter
//! is configured), the ids are those of the `tracing` spans it turns into
//! OpenTelemetry spans: the request span continues the caller's trace, and
//! each upstream call's `traceparent` names that call's span. Without it,
//! nothing is recorded, but the trace still flows: the hop keeps the
//! caller's trace id (or starts one) and each call gets a fresh span id, at
//! the cost of a few random numbers instead of a span pipeline.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are recorded by OpenTelemetry in this process (a provider
/// was installed): when not, no span can carry ids and the cheap path is
/// taken without asking `tracing`.
static RECORDING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_recording() {
    RECORDING.store(true, Ordering::Release);
}

/// Whether spans are recorded (and exported) in this process.
pub fn recording() -> bool {
    RECORDING.load(Ordering::Acquire)
}

/// The propagators every process of the project uses: W3C `traceparent` /
/// `tracestate`, then W3C `baggage`.
fn composite() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// [`composite`], built once: what this crate extracts and injects with.
fn propagator() -> &'static TextMapCompositePropagator {
    static PROPAGATOR: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(composite)
}

/// Installs [`composite`] as OpenTelemetry's global propagator (for
/// libraries that read it), once per process.
pub(crate) fn install_global_propagator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| opentelemetry::global::set_text_map_propagator(composite()));
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is not worth a header.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The context the caller sent (`traceparent`, `tracestate`, `baggage`);
/// empty when there is none or it is invalid (an invalid `traceparent` is
/// ignored, as the specification asks).
fn extract(headers: &HeaderMap) -> Context {
    propagator().extract(&Headers(headers))
}

/// Writes `cx` as propagation headers (replacing any already there).
fn inject(cx: &Context, headers: &mut HeaderMap) {
    propagator().inject_context(cx, &mut HeadersMut(headers));
}

/// Writes the propagation headers of `span` when OpenTelemetry records it
/// (the callee's parent is then that span); returns whether it did.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) -> bool {
    if !recording() || span.is_disabled() {
        return false;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    inject(&cx, headers);
    true
}

/// Makes `span` (a server span) continue the trace its caller sent, when
/// OpenTelemetry records it.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if recording() && !span.is_disabled() {
        // Fails only when nothing records the span: nothing to continue.
        let _ = span.set_parent(extract(headers));
    }
}

/// `00-{trace id}-{span id}-{flags}` in lowercase hex, as W3C Trace
/// Context writes it, without formatting machinery.
fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> [u8; 55] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 55];
    let mut at = 0;
    let mut put = |bytes: &[u8], at: &mut usize| {
        for b in bytes {
            out[*at] = HEX[usize::from(b >> 4)];
            out[*at + 1] = HEX[usize::from(b & 0x0f)];
            *at += 2;
        }
        *at += 1;
    };
    put(&[0], &mut at);
    put(&trace_id, &mut at);
    put(&span_id, &mut at);
    put(&[flags], &mut at);
    out
}

/// The trace a request belongs to, and the span of this hop.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// This hop's span context (remote or recorded) with the caller's baggage.
    cx: Context,
}

impl TraceContext {
    /// The context of an incoming request handled in `span`: the caller's
    /// trace continued, or a new one. When `span` is recorded by
    /// OpenTelemetry it becomes the hop's span; otherwise the hop gets a
    /// span id of its own.
    pub fn start(headers: &HeaderMap, span: &tracing::Span) -> Self {
        let parent = extract(headers);
        if recording() && span.set_parent(parent.clone()).is_ok() {
            let cx = span.context();
            if cx.span().span_context().is_valid() {
                return TraceContext { cx };
            }
        }
        Self::untraced(parent)
    }

    /// The context of an incoming request, without a span (the hop gets a
    /// span id of its own).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::untraced(extract(headers))
    }

    /// A new trace, for work that belongs to no request.
    pub fn new_root() -> Self {
        Self::untraced(Context::new())
    }

    fn untraced(parent: Context) -> Self {
        let ids = RandomIdGenerator::default();
        let remote = parent.span().span_context().clone();
        let hop = if remote.is_valid() {
            SpanContext::new(
                remote.trace_id(),
                ids.new_span_id(),
                remote.trace_flags(),
                true,
                remote.trace_state().clone(),
            )
        } else {
            SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                true,
                Default::default(),
            )
        };
        TraceContext {
            cx: parent.with_remote_span_context(hop),
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    /// This hop's span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        self.cx.span().span_context().span_id().to_string()
    }

    /// Whether the caller (or the sampler) asked for this trace to be recorded.
    pub fn is_sampled(&self) -> bool {
        self.cx.span().span_context().is_sampled()
    }

    /// The propagation headers for one outgoing call made in the current
    /// `tracing` span: that span's context when OpenTelemetry records it
    /// (the callee's parent is the call's span), else this hop's trace with
    /// a new span id.
    pub fn inject_into(&self, headers: &mut HeaderMap) {
        if recording() {
            let current = tracing::Span::current().context();
            if current.span().span_context().is_valid() {
                inject(&current, headers);
                return;
            }
        }
        // Nothing recorded: the hop's trace with a fresh span id, written
        // directly (on the stack, no context to allocate); W3C format as the
        // propagator writes it.
        let span = self.cx.span();
        let hop = span.span_context();
        let traceparent = traceparent(
            hop.trace_id().to_bytes(),
            RandomIdGenerator::default().new_span_id().to_bytes(),
            (hop.trace_flags() & TraceFlags::SAMPLED).to_u8(),
        );
        if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        let state = hop.trace_state().header();
        if !state.is_empty()
            && let Ok(value) = HeaderValue::try_from(state)
        {
            headers.insert(TRACESTATE, value);
        }
        if !self.cx.baggage().is_empty() {
            BaggagePropagator::new().inject_context(&self.cx, &mut HeadersMut(headers));
        }
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
        h.insert("baggage", HeaderValue::from_static("tenant=acme"));
        h
    }

    /// The hand-written `traceparent` is the one the format machinery
    /// (and OpenTelemetry's propagator) writes, for any ids and flags.
    #[test]
    fn traceparent_is_written_as_w3c_formats_it() {
        let ids = RandomIdGenerator::default();
        for flags in [0u8, 1, 0xab] {
            let (trace, span) = (ids.new_trace_id(), ids.new_span_id());
            let written = traceparent(trace.to_bytes(), span.to_bytes(), flags);
            let expected = format!("00-{trace}-{span}-{flags:02x}");
            assert_eq!(std::str::from_utf8(&written), Ok(expected.as_str()));
        }
        let written = traceparent([0xff; 16], [0x0f; 8], 1);
        assert_eq!(
            std::str::from_utf8(&written),
            Ok("00-ffffffffffffffffffffffffffffffff-0f0f0f0f0f0f0f0f-01")
        );
    }

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let ctx = TraceContext::from_headers(&headers(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        assert_eq!(ctx.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(ctx.span_id(), "b7ad6b7169203331");
        assert!(ctx.is_sampled());
        let mut out = HeaderMap::new();
        ctx.inject_into(&mut out);
        let tp = out["traceparent"].to_str().expect("ascii");
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-01"),
            "{tp}"
        );
        assert!(!tp.contains("b7ad6b7169203331"), "a new span id per call");
        assert_eq!(out["tracestate"], "vendor=abc");
        assert_eq!(out["baggage"], "tenant=acme");
        let mut again = HeaderMap::new();
        ctx.inject_into(&mut again);
        assert_ne!(again["traceparent"], out["traceparent"]);
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let unsampled = TraceContext::from_headers(&headers(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ));
        let mut out = HeaderMap::new();
        unsampled.inject_into(&mut out);
        assert!(
            out["traceparent"].to_str().expect("ascii").ends_with("-00"),
            "flags 00 is valid and kept"
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            let ctx = TraceContext::from_headers(&headers(bad));
            assert_ne!(
                ctx.trace_id(),
                "0af7651916cd43dd8448eb211c80319c",
                "{bad:?} must not be honoured"
            );
            assert_eq!(ctx.trace_id().len(), 32);
            let mut out = HeaderMap::new();
            ctx.inject_into(&mut out);
            assert!(
                out.get("tracestate").is_none(),
                "tracestate is dropped with an invalid traceparent ({bad:?})"
            );
        }
    }
}
