//! The policies of the upstream stack, one tower layer each.
//!
//! Order, outermost first (see [`crate::Upstream::new`]): [`deadline`] →
//! [`observe`] → [`coalesce`] → [`retry`] → [`breaker`] → [`hedge`] (opt-in)
//! → [`bulkhead`] → transport. Each is protocol-neutral: it sees [`UpstreamRequest`] and
//! [`UpstreamResponse`] and the typed [`UpstreamError`], never reqwest or
//! tonic types.
//!
//! Each layer has its own pinned response future (tower's habit), which
//! keeps its outcome recording in a field that is dropped with the future:
//! the one shape that stays right when the caller abandons the call at a
//! deadline. Each layer passes readiness down and calls its inner service
//! in place: no clone of the stack below and no allocation per call and
//! layer on the hot path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;

pub mod breaker;
pub mod bulkhead;
pub mod coalesce;
pub mod deadline;
pub mod hedge;
pub mod observe;
pub mod retry;

/// What every layer's service returns.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<UpstreamResponse, UpstreamError>> + Send>>;

/// The bound every inner service of the stack meets.
pub trait CallService:
    tower::Service<
        UpstreamRequest,
        Response = UpstreamResponse,
        Error = UpstreamError,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> CallService for S where
    S: tower::Service<
            UpstreamRequest,
            Response = UpstreamResponse,
            Error = UpstreamError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A ready-made failed call (for the transports, which box anyway).
pub(crate) fn fail(error: UpstreamError) -> CallFuture {
    Box::pin(std::future::ready(Err(error)))
}

pin_project_lite::pin_project! {
    /// The inner call, or a failure decided before making it.
    #[project = OrFailProj]
    pub(crate) enum OrFail<F> {
        /// Refused here (open circuit, full bulkhead, no budget).
        Failed { error: Option<UpstreamError> },
        /// Passed on.
        Called { #[pin] future: F },
    }
}

impl<F> OrFail<F> {
    pub(crate) fn failed(error: UpstreamError) -> Self {
        OrFail::Failed { error: Some(error) }
    }

    pub(crate) fn called(future: F) -> Self {
        OrFail::Called { future }
    }
}

impl<F, T> Future for OrFail<F>
where
    F: Future<Output = Result<T, UpstreamError>>,
{
    type Output = Result<T, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OrFailProj::Called { future } => future.poll(cx),
            OrFailProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                UpstreamError::new(
                    "unknown",
                    crate::Failure::Unavailable,
                    "polled after completion",
                )
            }))),
        }
    }
}
