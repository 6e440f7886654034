//! Deadline: the outermost layer. Each call's deadline is the earlier of
//! the upstream's own timeout and what is left of the section's budget
//! ([`crate::budget`]); it is written into the call, so the transports tell
//! the upstream (`grpc-timeout`, `x-request-deadline-ms`) and the retry
//! layer never sleeps past it. A call with less than the configured minimum
//! left is not started: an optional one is shed, a critical one times out.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use super::{CallFuture, CallService, fail};
use crate::budget::{self, Criticality};
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};

/// Applies [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    upstream: &'static str,
    timeout: Duration,
    min_budget: Duration,
}

impl DeadlineLayer {
    /// Calls to `upstream` take at most `timeout`, and are not started with
    /// less than `min_budget` left.
    pub fn new(upstream: &'static str, timeout: Duration, min_budget: Duration) -> Self {
        DeadlineLayer {
            upstream,
            timeout,
            min_budget,
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            layer: *self,
            inner,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    layer: DeadlineLayer,
    inner: S,
}

impl<S: CallService> Service<UpstreamRequest> for Deadline<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: UpstreamRequest) -> CallFuture {
        let DeadlineLayer {
            upstream,
            timeout,
            min_budget,
        } = self.layer;
        let now = Instant::now();
        let mut deadline = now + timeout;
        if let Some(section) = budget::current() {
            deadline = deadline.min(section.deadline);
            request.info.criticality = section.criticality;
        }
        request.info.deadline = Some(deadline);
        let left = deadline.saturating_duration_since(now);
        if left < min_budget {
            let failure = match request.info.criticality {
                Criticality::Optional => Failure::Shed,
                Criticality::Critical => Failure::Timeout,
            };
            return fail(UpstreamError::new(
                upstream,
                failure,
                format!("only {left:?} left, less than the minimum {min_budget:?}"),
            ));
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result,
                Err(_) => Err(UpstreamError::new(
                    upstream,
                    Failure::Timeout,
                    format!("no answer within {left:?}"),
                )),
            }
        })
    }
}
