//! What every upstream call carries from the client request.

use bff_telemetry::TraceContext;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Named once: a header name given as a `&str` that is not one of HTTP's
/// standard names is copied into a new allocation on every insert.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id and trace context of the client request on whose behalf
/// a call is made; sent upstream as `x-request-id`, `traceparent` and
/// `tracestate` (HTTP headers or gRPC metadata alike).
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The request id (validated or generated at the edge).
    pub request_id: HeaderValue,
    /// The trace of the client request.
    pub trace: TraceContext,
}

impl CallContext {
    /// A context that belongs to no client request (background work, tests).
    pub fn detached() -> Self {
        CallContext {
            request_id: HeaderValue::from_static("background"),
            trace: TraceContext::new_root(),
        }
    }

    /// The propagation headers for one outgoing call (a new span id each;
    /// when spans are exported, the call's own span replaces it).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(X_REQUEST_ID, self.request_id.clone());
        self.trace.inject_into(&mut headers);
        headers
    }
}
