//! Server request metrics: `http.server.request.duration` by route, method
//! and status, and `http.server.active_requests`.
//!
//! A layer with a named future: it runs on every request, so it allocates
//! nothing per request; the histogram of each (route, method, status) is
//! looked up in the recorder once and kept.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use bff_telemetry::names;
use http::StatusCode;
use parking_lot::RwLock;

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

/// The series of one route, by method label and status.
type RouteSeries = HashMap<(&'static str, u16), metrics::Histogram>;

/// The duration histogram of a route (its template, never the raw path:
/// ids must not explode the number of series), method and status. The
/// labels are bounded (routes are the app's, methods outside the standard
/// ones are `_OTHER`, statuses are three digits), and so is this map.
fn histogram(route: &str, method: &'static str, status: StatusCode) -> metrics::Histogram {
    // Registered once per series: requests only run after the recorder is
    // installed.
    static SERIES: OnceLock<RwLock<HashMap<Box<str>, RouteSeries>>> = OnceLock::new();
    let series = SERIES.get_or_init(RwLock::default);
    let key = (method, status.as_u16());
    if let Some(histogram) = series.read().get(route).and_then(|route| route.get(&key)) {
        return histogram.clone();
    }
    let histogram = metrics::histogram!(
        names::SERVER_DURATION,
        "http.route" => route.to_owned(),
        "http.request.method" => method,
        "http.response.status_code" => status.as_str().to_owned()
    );
    series
        .write()
        .entry(route.into())
        .or_default()
        .insert(key, histogram.clone());
    histogram
}

/// Layer recording the duration of every request and counting the
/// requests in flight.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let active = Active::start();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = bff_telemetry::method_label(request.method());
        MetricsFuture {
            inner: self.inner.call(request),
            sample: Some(Sample {
                started,
                _active: active,
                route,
                method,
            }),
        }
    }
}

/// What a request's sample needs once its response is there.
struct Sample {
    started: Instant,
    _active: Active,
    route: Option<MatchedPath>,
    method: &'static str,
}

pin_project_lite::pin_project! {
    /// The response future of [`MetricsService`].
    pub(crate) struct MetricsFuture<F> {
        #[pin]
        inner: F,
        sample: Option<Sample>,
    }
}

impl<F, R, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Some(sample), Ok(response)) = (this.sample.take(), &result) {
            let route = sample
                .route
                .as_ref()
                .map_or("unmatched", MatchedPath::as_str);
            histogram(route, sample.method, response.status())
                .record(sample.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}
