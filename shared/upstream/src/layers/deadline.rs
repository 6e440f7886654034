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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use crate::layers::CallFuture;
    use tower::ServiceExt;

    use crate::call::test_request as request;

    /// An inner service that reports the deadline it was given and hangs.
    fn hanging(seen: tokio::sync::mpsc::UnboundedSender<Option<Instant>>) -> impl CallService {
        tower::service_fn(move |r: UpstreamRequest| -> CallFuture {
            let _ = seen.send(r.info.deadline);
            Box::pin(std::future::pending())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_gets_the_earlier_of_its_timeout_and_the_section_budget() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let svc = DeadlineLayer::new("t", Duration::from_secs(2), Duration::from_millis(5))
            .layer(hanging(tx));
        let started = Instant::now();
        let section = Budget::new(started + Duration::from_millis(300), Criticality::Optional);
        let err = budget::scope(section, svc.clone().oneshot(request()))
            .await
            .expect_err("timed out");
        assert_eq!(err.failure, Failure::Timeout);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(
            rx.recv().await.flatten(),
            Some(started + Duration::from_millis(300))
        );

        let started = Instant::now();
        let err = svc.oneshot(request()).await.expect_err("timed out");
        assert_eq!(err.failure, Failure::Timeout);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "no section: the policy timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_call_starts_without_the_minimum_budget() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let svc = DeadlineLayer::new("t", Duration::from_secs(2), Duration::from_millis(5))
            .layer(hanging(tx));
        let nearly_spent = |c| Budget::new(Instant::now() + Duration::from_millis(3), c);
        let optional = budget::scope(
            nearly_spent(Criticality::Optional),
            svc.clone().oneshot(request()),
        )
        .await
        .expect_err("refused");
        assert_eq!(optional.failure, Failure::Shed, "an optional call is shed");
        let critical = budget::scope(nearly_spent(Criticality::Critical), svc.oneshot(request()))
            .await
            .expect_err("refused");
        assert_eq!(
            critical.failure,
            Failure::Timeout,
            "a critical one times out"
        );
        assert!(rx.try_recv().is_err(), "neither reached the upstream");
    }
}
