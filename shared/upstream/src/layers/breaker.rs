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
