//! Deadline: the outermost layer. Each call's deadline is the earlier of
//! the upstream's own timeout and what is left of the section's budget
//! ([`crate::budget`]); it is written into the call, so the transports tell
//! the upstream (`grpc-timeout`, `x-request-deadline-ms`) and the retry
//! layer never sleeps past it. A call with less than the configured minimum
//! left is not started: an optional one is shed, a critical one times out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Timeout};
use tower::{Layer, Service};

use super::{CallService, OrFail};
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
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: UpstreamRequest) -> Self::Future {
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
            return DeadlineFuture {
                inner: OrFail::failed(UpstreamError::new(
                    upstream,
                    failure,
                    format!("only {left:?} left, less than the minimum {min_budget:?}"),
                )),
                upstream,
                left,
            };
        }
        let call = tokio::time::timeout_at(deadline, self.inner.call(request));
        DeadlineFuture {
            inner: OrFail::called(Flatten { timeout: call }),
            upstream,
            left,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's timeout as one `Result` (the elapsed case marked).
    pub struct Flatten<F> {
        #[pin]
        timeout: Timeout<F>,
    }
}

impl<F> Future for Flatten<F>
where
    F: Future<Output = Result<UpstreamResponse, UpstreamError>>,
{
    type Output = Result<Option<UpstreamResponse>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().timeout.poll(cx)) {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        })
    }
}

pin_project_lite::pin_project! {
    /// Ends the call at its deadline.
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: OrFail<Flatten<F>>,
        upstream: &'static str,
        left: Duration,
    }
}

impl<F> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<UpstreamResponse, UpstreamError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(UpstreamError::new(
                this.upstream,
                Failure::Timeout,
                format!("no answer within {:?}", this.left),
            )),
            Err(error) => Err(error),
        })
    }
}
