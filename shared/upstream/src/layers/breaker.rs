//! Breaker: fails calls at once while the upstream's circuit is open, and
//! tells the circuit how each call went ([`crate::circuit`]). The permit
//! lives in the call's future, so a call dropped at a deadline is recorded
//! as a timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tower::{Layer, Service};

use super::{CallService, OrFail};
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::circuit::{CircuitBreaker, Permit};
use crate::error::{Failure, UpstreamError};

/// Applies [`Breaker`].
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Arc<CircuitBreaker>,
    upstream: &'static str,
}

impl BreakerLayer {
    /// Guards `upstream` with `breaker`.
    pub fn new(upstream: &'static str, breaker: Arc<CircuitBreaker>) -> Self {
        BreakerLayer { breaker, upstream }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breaker<S>;
    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker {
            layer: self.clone(),
            inner,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Breaker<S> {
    layer: BreakerLayer,
    inner: S,
}

impl<S: CallService> Service<UpstreamRequest> for Breaker<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        // The call's span (when recorded) says what state the circuit was in.
        let span = tracing::Span::current();
        if span.has_field("bff.circuit.state") {
            span.record("bff.circuit.state", self.layer.breaker.state().as_str());
        }
        let Some(permit) = self.layer.breaker.try_acquire() else {
            return BreakerFuture {
                inner: OrFail::failed(UpstreamError::new(
                    self.layer.upstream,
                    Failure::CircuitOpen,
                    "circuit open",
                )),
                permit: None,
            };
        };
        BreakerFuture {
            inner: OrFail::called(self.inner.call(request)),
            permit: Some(permit),
        }
    }
}

pin_project_lite::pin_project! {
    /// Settles the permit with the outcome; dropped unsettled, the permit
    /// records an abandoned call.
    pub struct BreakerFuture<F> {
        #[pin]
        inner: OrFail<F>,
        permit: Option<Permit>,
    }
}

impl<F> Future for BreakerFuture<F>
where
    F: Future<Output = Result<UpstreamResponse, UpstreamError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(permit) = this.permit.take() {
            match &result {
                Ok(_) => {
                    permit.record(false);
                }
                Err(e) if e.failure == Failure::Shed => permit.forget(),
                Err(e) => {
                    permit.record(e.failure.counts_against_circuit());
                }
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::call::test_request;
    use crate::circuit::{BreakerConfig, CircuitState};
    use crate::layers::CallService;

    type Handle = mock::Handle<UpstreamRequest, UpstreamResponse>;

    /// The layer over a mock upstream, with a breaker that judges the last
    /// four calls once it has seen two, and opens at half of them failed.
    fn guarded() -> (impl CallService, Handle, Arc<CircuitBreaker>) {
        let (service, handle) = mock::pair::<UpstreamRequest, UpstreamResponse>();
        let service = service.map_err(|e| match e.downcast::<UpstreamError>() {
            Ok(error) => *error,
            Err(other) => UpstreamError::new("t", Failure::Unavailable, other.to_string()),
        });
        let breaker = CircuitBreaker::new(
            "t",
            BreakerConfig {
                window: 4,
                minimum_calls: 2,
                failure_rate: 50,
                open_for: Duration::from_secs(10),
                ..BreakerConfig::default()
            },
        );
        let layer = BreakerLayer::new("t", breaker.clone());
        (layer.layer(service), handle, breaker)
    }

    fn ok() -> UpstreamResponse {
        UpstreamResponse {
            status: StatusCode::OK,
            decoded: Arc::new(()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_dropped_before_their_answer_count_as_failures() {
        let (service, mut handle, breaker) = guarded();
        handle.allow(10);
        for _ in 0..2 {
            let call = tokio::spawn(service.clone().oneshot(test_request()));
            let _pending = handle.next_request().await.expect("the call");
            // The caller gives up (a deadline above, a client gone).
            call.abort();
            let _ = call.await;
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        let refused = service
            .clone()
            .oneshot(test_request())
            .await
            .expect_err("refused");
        assert_eq!(refused.failure, Failure::CircuitOpen);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), handle.next_request())
                .await
                .is_err(),
            "an open circuit keeps the call from the upstream"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_close_it_and_shed_calls_are_not_judged() {
        let (service, mut handle, breaker) = guarded();
        handle.allow(10);
        for _ in 0..3 {
            let call = tokio::spawn(service.clone().oneshot(test_request()));
            let (_, reply) = handle.next_request().await.expect("the call");
            reply.send_error(UpstreamError::new("t", Failure::Shed, "shed below"));
            assert_eq!(
                call.await.expect("task").expect_err("shed").failure,
                Failure::Shed
            );
        }
        assert_eq!(
            breaker.state(),
            CircuitState::Closed,
            "a call shed below the breaker says nothing of the upstream"
        );
        let call = tokio::spawn(service.clone().oneshot(test_request()));
        let (_, reply) = handle.next_request().await.expect("the call");
        reply.send_response(ok());
        call.await.expect("task").expect("answered");
        let call = tokio::spawn(service.oneshot(test_request()));
        let (_, reply) = handle.next_request().await.expect("the call");
        reply.send_error(UpstreamError::new("t", Failure::Unavailable, "down"));
        let _ = call.await.expect("task");
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "one failure in two judged calls is half"
        );
    }

    #[tokio::test]
    async fn readiness_is_the_upstream_s() {
        let (mut service, mut handle, _) = guarded();
        handle.allow(0);
        let mut task = tokio_test::task::spawn(());
        task.enter(|cx, _| assert_pending!(service.poll_ready(cx)));
        handle.allow(1);
        task.enter(|cx, _| assert_ready_ok!(service.poll_ready(cx)));
    }
}
