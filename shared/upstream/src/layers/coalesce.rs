//! Coalesce: identical reads in flight at the same time share one call.
//!
//! Why: a hot key (a popular product, a user reloading a screen on two
//! devices) otherwise sends the same request to an upstream many times at
//! once — exactly when the upstream is slow and least able to take it. Two
//! reads are identical when the target, the body and the subject match; the
//! subject is part of the key so that one user's data never answers
//! another's request, even if an upstream URL did not name the user. Only
//! idempotent calls are coalesced. Waiters share the answer *and* its
//! decoding ([`crate::call::Decoded`]).
//!
//! The shared call runs with the deadline of the request that started it;
//! each waiter keeps its own deadline above this layer. A read joins a call
//! in flight only if that call has at least half of the reader's own budget
//! left; otherwise it starts a fresh call (which later readers then join),
//! so a nearly expired call cannot time out a reader that had time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bff_telemetry::names;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::Shared;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{CallFuture, CallService};
use crate::call::{Target, UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    target: Target,
    body: Bytes,
    subject: Option<Arc<str>>,
}

#[derive(Debug)]
struct Leader {
    id: u64,
    deadline: Option<Instant>,
    call: Shared<CallFuture>,
}

type InFlight = Mutex<HashMap<Key, Leader>>;

/// Applies [`Coalesce`].
#[derive(Debug, Clone)]
pub struct CoalesceLayer {
    upstream: &'static str,
    in_flight: Arc<InFlight>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl CoalesceLayer {
    /// Coalesces the reads of `upstream`.
    pub fn new(upstream: &'static str) -> Self {
        CoalesceLayer {
            upstream,
            in_flight: Arc::default(),
            next_id: Arc::default(),
        }
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;
    fn layer(&self, inner: S) -> Coalesce<S> {
        Coalesce {
            layer: self.clone(),
            inner,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Coalesce<S> {
    layer: CoalesceLayer,
    inner: S,
}

impl<S: CallService> Service<UpstreamRequest> for Coalesce<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = futures::future::Either<Shared<CallFuture>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        use futures::future::Either;
        if !request.info.idempotent {
            return Either::Right(self.inner.call(request));
        }
        let key = Key {
            target: request.target.clone(),
            body: request.body.clone(),
            subject: request.info.subject.clone(),
        };
        let mut in_flight = self
            .layer
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let deadline = request.info.deadline;
        if let Some(leader) = in_flight.get(&key)
            && has_time_for(leader.deadline, deadline)
        {
            metrics::counter!(names::COALESCED_CALLS, "upstream" => self.layer.upstream)
                .increment(1);
            tracing::Span::current().record("bff.coalesced", true);
            return Either::Left(leader.call.clone());
        }
        let id = self
            .layer
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inner = self.inner.call(request);
        let map = self.layer.in_flight.clone();
        let own_key = key.clone();
        let call: CallFuture = Box::pin(async move {
            let result = inner.await;
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&own_key).is_some_and(|leader| leader.id == id) {
                map.remove(&own_key);
            }
            result
        });
        let shared = call.shared();
        in_flight.insert(
            key,
            Leader {
                id,
                deadline,
                call: shared.clone(),
            },
        );
        Either::Left(shared)
    }
}

/// Whether a call ending at `leader` leaves a reader ending at `reader` at
/// least half of its own time.
fn has_time_for(leader: Option<Instant>, reader: Option<Instant>) -> bool {
    match (leader, reader) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(l), Some(r)) => {
            let now = Instant::now();
            l.saturating_duration_since(now) * 2 >= r.saturating_duration_since(now)
        }
    }
}
