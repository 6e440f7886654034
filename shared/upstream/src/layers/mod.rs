//! The policies of the upstream stack, one tower layer each.
//!
//! Order, outermost first (see [`crate::stack`]): [`deadline`] →
//! [`observe`] → [`coalesce`] → [`retry`] → [`breaker`] → [`hedge`] (opt-in)
//! → [`bulkhead`] → transport. Each is protocol-neutral: it sees [`UpstreamRequest`] and
//! [`UpstreamResponse`] and the typed [`UpstreamError`], never reqwest or
//! tonic types.
//!
//! The response futures are boxed async blocks: a boxed future per layer
//! costs a few tens of nanoseconds against a call of tens of microseconds,
//! and lets each layer keep its outcome recording in a drop guard, the one
//! shape that stays right when the caller abandons the call at a deadline.
//! Each layer passes readiness down and calls its inner service in place
//! (no clone of the stack below per call: cloning a stack of Arc-holding
//! layers at every level costs measurable CPU when two cores share them).

use std::future::Future;
use std::pin::Pin;

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

/// A ready-made failed call.
pub(crate) fn fail(error: UpstreamError) -> CallFuture {
    Box::pin(std::future::ready(Err(error)))
}
