//! Server request metrics: `http.server.request.duration` by route, method
//! and status, and `http.server.active_requests`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use bff_telemetry::names;

/// Counts a request as active until it ends or is dropped.
struct Active(metrics::Gauge);

impl Active {
    fn start() -> Self {
        // Registered once: requests only run after the recorder is installed.
        static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
        let gauge = GAUGE
            .get_or_init(|| metrics::gauge!(names::SERVER_ACTIVE_REQUESTS))
            .clone();
        gauge.increment(1.0);
        Active(gauge)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Middleware recording the duration of every request.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _active = Active::start();
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
        "http.route" => route,
        "http.request.method" => method,
        "http.response.status_code" => response.status().as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
