//! The one rescue at the edge: whatever produced an error response — a
//! handler's `ApiError`, axum's routing (405), a body limit (413), an
//! extractor — it leaves as RFC 9457 problem+json carrying the request id
//! and trace id, and never with an internal message.

use std::sync::Arc;

use bff_telemetry::TraceContext;

use axum::response::Response;
use bff_problem::{ApiError, PROBLEM_JSON};
use http::header;

/// Re-renders error responses as problem+json with the request's ids. The
/// headers that middleware set on the way out (`Preference-Applied`,
/// `Deprecation`, `Vary`, …) are kept; only those describing the old body
/// go.
pub fn rescue(response: Response, request_id: &str, trace: &TraceContext) -> Response {
    if let Some(error) = response.extensions().get::<Arc<ApiError>>().cloned() {
        let mut rendered = ApiError::render(&error, Some(request_id), Some(&trace.trace_id()));
        keep_headers(&response, &mut rendered);
        return rendered;
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    // A bare error from below the handlers: replace its body (which may be
    // plain text from a library) with a problem of the same status.
    let mut rescued =
        ApiError::from_status(status).to_response(Some(request_id), Some(&trace.trace_id()));
    keep_headers(&response, &mut rescued);
    rescued
}

/// Copies the headers of `from` that `to` does not set, except those that
/// describe `from`'s body.
fn keep_headers(from: &Response, to: &mut Response) {
    for (name, value) in from.headers() {
        let describes_body = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ETAG,
        ]
        .contains(name);
        if !describes_body && !to.headers().contains_key(name) {
            to.headers_mut().append(name.clone(), value.clone());
        }
    }
}
