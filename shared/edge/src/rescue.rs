//! The one rescue at the edge: whatever produced an error response — a
//! handler's `ApiError`, axum's routing (405), a body limit (413), an
//! extractor — it leaves as RFC 9457 problem+json carrying the request id
//! and trace id, and never with an internal message.

use std::sync::Arc;

use axum::response::Response;
use bff_problem::{ApiError, PROBLEM_JSON};
use http::header;

/// Re-renders error responses as problem+json with the request's ids.
pub fn rescue(response: Response, request_id: &str, trace_id: &str) -> Response {
    if let Some(error) = response.extensions().get::<Arc<ApiError>>().cloned() {
        return error.to_response(Some(request_id), Some(trace_id));
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
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut rescued = ApiError::from_status(status).to_response(Some(request_id), Some(trace_id));
    if let Some(allow) = allow {
        rescued.headers_mut().insert(header::ALLOW, allow);
    }
    rescued
}
