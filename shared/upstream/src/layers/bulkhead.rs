//! Bulkhead: a limit on the calls in flight to one upstream, so one slow
//! service cannot hold every socket and task of the process. A call that
//! does not fit is shed at once (`reason: shed`) rather than queued: a
//! queued call would spend its deadline waiting.
//!
//! The limit follows the upstream's latency below the configured maximum
//! ([`bff_limit::Gradient`], unless the policy's `adaptive_concurrency` is
//! off): when the upstream slows down, the calls in flight to it (rate ×
//! latency) would grow with its latency; instead its limit falls, so a
//! slow service gets fewer concurrent calls, the excess shed at once,
//! optional ones first. Unused, the limit drifts down toward twice the
//! calls in flight (not below [`MIN_CONCURRENCY`]), so a sudden slowness
//! meets a limit near the usual calls in flight. A slowness that lasts
//! becomes the new baseline within seconds, and the limit grows back to
//! what the calls need.
//!
//! Why not tower's `ConcurrencyLimit` + `LoadShed`: they know nothing of
//! criticality. Here a share of the limit is kept for critical calls, so
//! when an upstream saturates, optional sections are dropped first and the
//! data a response cannot do without keeps flowing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bff_limit::{ClassId, Gauges, GradientConfig, Limiter, LimiterConfig, Permit, Saturation};
use bff_telemetry::names;
use tower::{Layer, Service};

use super::{CallService, OrFail};
use crate::budget::Criticality;
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};

/// The least an adaptive bulkhead's limit becomes: what a burst of pages
/// opening at once on a quiet replica needs of one upstream, and enough
/// calls to a slow upstream to see it recover. It is above what the edge
/// admits on one CPU at its floor (32 requests, each making at most one
/// call to an upstream) with the critical reserve taken out: measured at
/// 3,000/s on one CPU (scenario 11), 32 here shed optional calls whenever
/// arrivals bunched up.
pub const MIN_CONCURRENCY: usize = 64;

/// The baseline of an upstream's latency rises toward a slower one by this
/// share of the gap per window (100 ms) while the CPU has room: a slowness
/// that lasts is adopted in about five seconds, during which the calls
/// past the lowered limit are shed.
const BASELINE_RISE: f64 = 0.02;

/// What a bulkhead admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Calls in flight at most.
    pub max: usize,
    /// Percent of the limit kept for critical calls.
    pub critical_reserve: u8,
    /// Whether the limit follows the upstream's latency below `max` (it
    /// starts at `max`), or is `max` itself.
    pub adaptive: bool,
}

/// Applies [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    upstream: &'static str,
    limiter: Arc<Limiter>,
    critical: ClassId,
    optional: ClassId,
    saturation: metrics::Gauge,
    shed: metrics::Counter,
}

impl BulkheadLayer {
    /// The bulkhead of `upstream`.
    pub fn new(upstream: &'static str, config: BulkheadConfig) -> Self {
        let max = config.max.max(1);
        let limit = if config.adaptive {
            LimiterConfig::adaptive(GradientConfig {
                rise: BASELINE_RISE,
                // The BFF's own CPU, saturated, delays every call's answer:
                // that is the edge's admission to handle, not this upstream.
                on_this_cpu: false,
                ..GradientConfig::new(max, MIN_CONCURRENCY, max)
            })
        } else {
            LimiterConfig::fixed(max)
        };
        let gauges = Gauges {
            limit: metrics::gauge!(names::BULKHEAD_LIMIT, "upstream" => upstream),
            ..Gauges::none()
        };
        let limiter = Limiter::new(limit, Saturation::runtime(), gauges);
        let critical = limiter.class(
            "critical",
            config.critical_reserve.min(100),
            metrics::Gauge::noop(),
        );
        BulkheadLayer {
            upstream,
            optional: limiter.default_class(),
            critical,
            limiter,
            saturation: metrics::gauge!(names::BULKHEAD_SATURATION, "upstream" => upstream),
            shed: metrics::counter!(names::SHED_CALLS, "upstream" => upstream),
        }
    }

    /// The limit in use now.
    pub fn limit(&self) -> usize {
        self.limiter.usage().1
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;
    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead {
            layer: self.clone(),
            inner,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Bulkhead<S> {
    layer: BulkheadLayer,
    inner: S,
}

impl<S: CallService> Service<UpstreamRequest> for Bulkhead<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = BulkheadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let layer = &self.layer;
        let class = match request.info.criticality {
            Criticality::Critical => layer.critical,
            Criticality::Optional => layer.optional,
        };
        let Ok(permit) = layer.limiter.try_acquire(class) else {
            layer.shed.increment(1);
            return BulkheadFuture {
                inner: OrFail::failed(UpstreamError::new(
                    layer.upstream,
                    Failure::Shed,
                    "too many calls in flight",
                )),
                slot: None,
            };
        };
        let slot = Slot {
            permit: Some(permit),
            layer: layer.clone(),
        };
        slot.report();
        BulkheadFuture {
            inner: OrFail::called(self.inner.call(request)),
            slot: Some(slot),
        }
    }
}

/// A call's place in the bulkhead; the saturation gauge follows every
/// taking and giving back (also when the call is abandoned).
struct Slot {
    permit: Option<Permit>,
    layer: BulkheadLayer,
}

impl Slot {
    fn report(&self) {
        let (in_use, limit) = self.layer.limiter.usage();
        self.layer
            .saturation
            .set(in_use as f64 / limit.max(1) as f64);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Give the place back first, so the gauge counts without it.
        self.permit.take();
        self.report();
    }
}

pin_project_lite::pin_project! {
    /// Holds the call's slot until it ends or is dropped.
    pub struct BulkheadFuture<F> {
        #[pin]
        inner: OrFail<F>,
        slot: Option<Slot>,
    }
}

impl<F> Future for BulkheadFuture<F>
where
    F: Future<Output = Result<UpstreamResponse, UpstreamError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        this.slot.take();
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::test_request;
    use crate::layers::CallFuture;
    use tower::ServiceExt;

    fn request(criticality: Criticality) -> UpstreamRequest {
        let mut request = test_request();
        request.info.criticality = criticality;
        request
    }

    #[tokio::test]
    async fn optional_calls_are_shed_first_and_critical_ones_use_the_reserve() {
        let (release, wait) = tokio::sync::watch::channel(false);
        let inner = tower::service_fn(move |_: UpstreamRequest| -> CallFuture {
            let mut wait = wait.clone();
            Box::pin(async move {
                let _ = wait.wait_for(|go| *go).await;
                Err(UpstreamError::new("t", Failure::Unavailable, "released"))
            })
        });
        // Four places, a quarter (one) kept for critical calls.
        let bulkhead = BulkheadLayer::new(
            "t",
            BulkheadConfig {
                max: 4,
                critical_reserve: 25,
                adaptive: false,
            },
        )
        .layer(inner);
        let mut held = Vec::new();
        for _ in 0..3 {
            let call = bulkhead.clone().oneshot(request(Criticality::Optional));
            held.push(tokio::spawn(call));
        }
        tokio::task::yield_now().await;
        let shed = bulkhead
            .clone()
            .oneshot(request(Criticality::Optional))
            .await
            .expect_err("shed");
        assert_eq!(
            shed.failure,
            Failure::Shed,
            "the last slot is not for optional calls"
        );
        let critical = tokio::spawn(bulkhead.clone().oneshot(request(Criticality::Critical)));
        tokio::task::yield_now().await;
        let full = bulkhead
            .clone()
            .oneshot(request(Criticality::Critical))
            .await
            .expect_err("full");
        assert_eq!(full.failure, Failure::Shed, "no slot left at all");
        release.send_replace(true);
        let finished = critical.await.expect("task").expect_err("released");
        assert_eq!(
            finished.failure,
            Failure::Unavailable,
            "the critical call ran"
        );
        for h in held {
            let _ = h.await;
        }
        assert_eq!(
            bulkhead
                .oneshot(request(Criticality::Optional))
                .await
                .expect_err("released")
                .failure,
            Failure::Unavailable,
            "slots come back when calls end"
        );
    }

    /// An upstream called 3,000 times a second that becomes ten times
    /// slower: its limit falls, so it gets fewer calls in flight than the
    /// 300 its new latency would pile up, the rest shed at once; fast
    /// again, it gets every call.
    #[tokio::test(start_paused = true)]
    async fn a_slower_upstream_gets_fewer_calls_in_flight_not_a_queue() {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        let latency_ms = Arc::new(AtomicU64::new(10));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let inner = tower::service_fn({
            let (latency_ms, now, most) = (latency_ms.clone(), now.clone(), most.clone());
            move |_: UpstreamRequest| -> CallFuture {
                let (latency_ms, now, most) = (latency_ms.clone(), now.clone(), most.clone());
                Box::pin(async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    let ms = latency_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Err(UpstreamError::new("t", Failure::Unavailable, "done"))
                })
            }
        });
        let layer = BulkheadLayer::new(
            "t",
            BulkheadConfig {
                max: 256,
                critical_reserve: 20,
                adaptive: true,
            },
        );
        let bulkhead = layer.layer(inner);
        let run = |seconds: u64| {
            let bulkhead = bulkhead.clone();
            async move {
                let mut shed = 0;
                let mut calls = tokio::task::JoinSet::new();
                for _ in 0..seconds * 1000 {
                    for _ in 0..3 {
                        calls.spawn(bulkhead.clone().oneshot(request(Criticality::Critical)));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    while let Some(done) = calls.try_join_next() {
                        if done.expect("task").expect_err("fails").failure == Failure::Shed {
                            shed += 1;
                        }
                    }
                }
                while let Some(done) = calls.join_next().await {
                    if done.expect("task").expect_err("fails").failure == Failure::Shed {
                        shed += 1;
                    }
                }
                shed
            }
        };
        assert_eq!(run(2).await, 0, "fast: every call");
        assert_eq!(
            layer.limit(),
            MIN_CONCURRENCY,
            "unused, the limit came down from 256 toward twice the thirty in flight"
        );

        latency_ms.store(100, Ordering::SeqCst);
        most.store(0, Ordering::SeqCst);
        let shed = run(1).await;
        let slow_most = most.load(Ordering::SeqCst);
        assert!(shed > 0, "past the lowered limit, calls are shed");
        assert!(
            slow_most < 150,
            "at most {slow_most} in flight, where 300 would have piled up"
        );
        assert!(layer.limit() < 100, "limit {}", layer.limit());

        latency_ms.store(10, Ordering::SeqCst);
        run(5).await;
        assert_eq!(run(1).await, 0, "fast again: every call");
    }
}
