//! Server request metrics: `http.server.request.duration` by route, method
//! and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use bff_telemetry::names;

/// Middleware recording the duration of every request.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The route template, never the raw path: ids must not explode the
    // number of series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    metrics::histogram!(
        names::SERVER_DURATION,
        "http_route" => route,
        "http_request_method" => method,
        "http_response_status_code" => response.status().as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
