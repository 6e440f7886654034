//! The request context: request id and trace context, established once per
//! request at the edge and carried to every upstream call.

use std::ops::Deref;

use axum::extract::{FromRequestParts, Request};
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

/// Middleware: establishes the [`RequestContext`], runs the request inside a
/// span carrying its ids, echoes `x-request-id`, and turns every error
/// response into problem+json with the ids ([`rescue`]).
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| valid_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let trace = TraceContext::from_headers(request.headers());
    let trace_id = trace.trace_id();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = request_id.to_str().unwrap_or_default(),
        trace_id = %trace_id,
    );
    request.extensions_mut().insert(RequestContext(CallContext {
        request_id: request_id.clone(),
        trace,
    }));
    let response = next.run(request).instrument(span).await;
    let mut response = rescue::rescue(response, request_id.to_str().unwrap_or_default(), &trace_id);
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
