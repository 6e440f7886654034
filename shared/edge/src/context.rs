//! The request context: request id and trace context, established once per
//! request at the edge and carried to every upstream call.

use std::ops::Deref;

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bff_telemetry::TraceContext;
use bff_upstream::CallContext;
use http::HeaderValue;
use http::request::Parts;
use tracing::Instrument;

use crate::rescue;

/// The header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The context of the current request (an extractor).
#[derive(Debug, Clone)]
pub struct RequestContext(pub CallContext);

impl Deref for RequestContext {
    type Target = CallContext;
    fn deref(&self) -> &CallContext {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| {
                RequestContext(CallContext {
                    request_id: new_request_id(),
                    trace: TraceContext::from_headers(&parts.headers),
                })
            }))
    }
}

/// A request id a client may choose: 1 to 128 characters of letters, digits
/// and `-_.:`, so it is safe in headers, logs and upstream calls.
pub fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

fn new_request_id() -> HeaderValue {
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Middleware: establishes the [`RequestContext`], runs the request inside
/// its span (the trace's server span when spans are exported: route,
/// client, pseudonymous subject, status), writes one log line per request
/// at `info` (path without its query, never a header), echoes
/// `x-request-id`, and turns every error response into problem+json with
/// the ids ([`rescue`]). `client` is the BFF's name.
pub async fn request_context(
    State(client): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| valid_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let method = request.method();
    // Probes and scrapes (every few seconds, from every replica's
    // orchestrator) are neither traced nor logged.
    let probe = matches!(route, "/healthz" | "/readyz" | "/metrics");
    let span = if probe {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = route,
            url.path = request.uri().path(),
            bff.client = client,
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            enduser.pseudo.id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        )
    };
    let trace = TraceContext::start(request.headers(), &span);
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id());
        span.record("span_id", trace.span_id());
    }
    request.extensions_mut().insert(RequestContext(CallContext {
        request_id: request_id.clone(),
        trace: trace.clone(),
    }));
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = rescue::rescue(response, request_id.to_str().unwrap_or_default(), &trace);
    if !span.is_disabled() {
        let status = response.status().as_u16();
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
        let _entered = span.enter();
        tracing::info!(
            http.response.status_code = status,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        for ok in ["abc", "0af7-651:9.x_y", &"a".repeat(128)] {
            assert!(
                valid_request_id(&HeaderValue::from_str(ok).expect("header")),
                "{ok}"
            );
        }
        for bad in [
            "",
            "has space",
            "semi;colon",
            &"a".repeat(129),
            "quote\"",
            "ünï",
        ] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).expect("header");
            assert!(!valid_request_id(&value), "{bad}");
        }
    }
}
