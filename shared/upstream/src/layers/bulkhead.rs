//! Bulkhead: a bound on the calls in flight to one upstream, so one slow
//! service cannot hold every socket and task of the process. A call that
//! does not fit is shed at once (`reason: shed`) rather than queued: a
//! queued call would spend its deadline waiting.
//!
//! Why not tower's `ConcurrencyLimit` + `LoadShed`: they know nothing of
//! criticality. Here a share of the slots is kept for critical calls, so
//! when an upstream saturates, optional sections are dropped first and the
//! data a response cannot do without keeps flowing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bff_telemetry::names;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::{CallService, OrFail};
use crate::budget::Criticality;
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};

/// Applies [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    upstream: &'static str,
    slots: Arc<Semaphore>,
    max: usize,
    reserved: usize,
    saturation: metrics::Gauge,
}

impl BulkheadLayer {
    /// At most `max` calls in flight to `upstream`, the last `reserved` of
    /// them for critical calls only.
    pub fn new(upstream: &'static str, max: usize, reserved: usize) -> Self {
        let max = max.max(1);
        BulkheadLayer {
            upstream,
            slots: Arc::new(Semaphore::new(max)),
            max,
            reserved: reserved.min(max - 1),
            saturation: metrics::gauge!(names::BULKHEAD_SATURATION, "upstream" => upstream),
        }
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
        let slots = &self.layer.slots;
        let fits = match request.info.criticality {
            Criticality::Critical => true,
            Criticality::Optional => slots.available_permits() > self.layer.reserved,
        };
        let permit = if fits {
            slots.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let Some(permit) = permit else {
            metrics::counter!(names::SHED_CALLS, "upstream" => self.layer.upstream).increment(1);
            return BulkheadFuture {
                inner: OrFail::failed(UpstreamError::new(
                    self.layer.upstream,
                    Failure::Shed,
                    "too many calls in flight",
                )),
                slot: None,
            };
        };
        let slot = Slot {
            permit: Some(permit),
            layer: self.layer.clone(),
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
    permit: Option<OwnedSemaphorePermit>,
    layer: BulkheadLayer,
}

impl Slot {
    fn report(&self) {
        let layer = &self.layer;
        let in_use = layer.max.saturating_sub(layer.slots.available_permits());
        layer.saturation.set(in_use as f64 / layer.max as f64);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Give the permit back first, so the gauge counts without it.
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
        // Four slots, one kept for critical calls.
        let bulkhead = BulkheadLayer::new("t", 4, 1).layer(inner);
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
}
