//! Breaker: fails calls at once while the upstream's circuit is open, and
//! tells the circuit how each call went ([`crate::circuit`]). The permit
//! lives in the call's future, so a call dropped at a deadline is recorded
//! as a timeout.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{CallFuture, CallService, fail};
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::circuit::CircuitBreaker;
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
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> CallFuture {
        let Some(permit) = self.layer.breaker.try_acquire() else {
            return fail(UpstreamError::new(
                self.layer.upstream,
                Failure::CircuitOpen,
                "circuit open",
            ));
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            match &result {
                Ok(_) => {
                    permit.record(false);
                }
                Err(e) if e.failure == Failure::Shed => permit.forget(),
                Err(e) => {
                    permit.record(e.failure.counts_against_circuit());
                }
            }
            result
        })
    }
}
