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
use std::sync::Arc;
use std::task::{Context, Poll};

use bff_telemetry::names;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::Shared;
use parking_lot::Mutex;
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
        let mut in_flight = self.layer.in_flight.lock();
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
            let mut map = map.lock();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::call::test_request;
    use crate::error::Failure;

    type Handle = mock::Handle<UpstreamRequest, UpstreamResponse>;

    /// The layer over a mock upstream whose every request the test answers.
    fn coalesced() -> (impl CallService, Handle) {
        let (service, handle) = mock::pair::<UpstreamRequest, UpstreamResponse>();
        let service =
            service.map_err(|e| UpstreamError::new("t", Failure::Unavailable, e.to_string()));
        (CoalesceLayer::new("t").layer(service), handle)
    }

    fn read() -> UpstreamRequest {
        let mut request = test_request();
        request.info.idempotent = true;
        request
    }

    fn answer(n: u32) -> UpstreamResponse {
        UpstreamResponse {
            status: StatusCode::OK,
            decoded: Arc::new(n),
        }
    }

    fn value(response: &UpstreamResponse) -> Option<u32> {
        response.decoded.downcast_ref::<u32>().copied()
    }

    #[tokio::test(start_paused = true)]
    async fn identical_reads_in_flight_share_one_call() {
        let (service, mut handle) = coalesced();
        handle.allow(10);
        let first = tokio::spawn(service.clone().oneshot(read()));
        let second = tokio::spawn(service.clone().oneshot(read()));
        let (_, reply) = handle.next_request().await.expect("the shared call");
        tokio::task::yield_now().await;
        assert!(
            tokio::time::timeout(Duration::from_secs(1), handle.next_request())
                .await
                .is_err(),
            "the second read joined the first call"
        );
        reply.send_response(answer(7));
        for read in [first, second] {
            let response = read.await.expect("task").expect("answered");
            assert_eq!(value(&response), Some(7));
        }
        // Once answered, the call is gone: the next read is a new call.
        let third = tokio::spawn(service.oneshot(read()));
        let (_, reply) = handle.next_request().await.expect("a new call");
        reply.send_response(answer(8));
        assert_eq!(
            value(&third.await.expect("task").expect("answered")),
            Some(8)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn writes_and_other_subjects_are_never_coalesced() {
        let (service, mut handle) = coalesced();
        handle.allow(10);
        let mut write = read();
        write.info.idempotent = false;
        let mut theirs = read();
        theirs.info.subject = Some(Arc::from("someone else"));
        let calls = [
            tokio::spawn(service.clone().oneshot(read())),
            tokio::spawn(service.clone().oneshot(write)),
            tokio::spawn(service.clone().oneshot(theirs)),
        ];
        for n in 0..3 {
            let (_, reply) = handle.next_request().await.expect("its own call");
            reply.send_response(answer(n));
        }
        let mut seen: Vec<u32> = Vec::new();
        for call in calls {
            let response = call.await.expect("task").expect("answered");
            seen.extend(value(&response));
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2], "three calls, three answers");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_does_not_join_a_call_with_less_than_half_its_time_left() {
        let (service, mut handle) = coalesced();
        handle.allow(10);
        let now = Instant::now();
        let mut hurried = read();
        hurried.info.deadline = Some(now + Duration::from_millis(100));
        let mut patient = read();
        patient.info.deadline = Some(now + Duration::from_secs(1));
        let first = tokio::spawn(service.clone().oneshot(hurried));
        let (_, first_reply) = handle.next_request().await.expect("first call");
        let second = tokio::spawn(service.oneshot(patient));
        let (_, second_reply) = handle.next_request().await.expect("a call of its own");
        first_reply.send_response(answer(1));
        second_reply.send_response(answer(2));
        assert_eq!(
            value(&first.await.expect("task").expect("answered")),
            Some(1)
        );
        assert_eq!(
            value(&second.await.expect("task").expect("answered")),
            Some(2)
        );
    }

    #[tokio::test]
    async fn readiness_is_the_upstream_s() {
        let (mut service, mut handle) = coalesced();
        handle.allow(0);
        let mut ready = tokio_test::task::spawn(());
        ready.enter(|cx, _| assert_pending!(service.poll_ready(cx)));
        handle.allow(1);
        ready.enter(|cx, _| assert_ready_ok!(service.poll_ready(cx)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_reader_gave_up_is_joined_by_the_next_one() {
        let (service, mut handle) = coalesced();
        handle.allow(10);
        // The reader that started the call drops it before the answer.
        let abandoned = tokio::spawn(service.clone().oneshot(read()));
        let (_, reply) = handle.next_request().await.expect("the call");
        abandoned.abort();
        let _ = abandoned.await;
        let next = tokio::spawn(service.oneshot(read()));
        tokio::task::yield_now().await;
        reply.send_response(answer(5));
        assert_eq!(
            value(&next.await.expect("task").expect("answered")),
            Some(5),
            "the call in flight still answers"
        );
        // (With every clone of the service gone, the mock says so at once.)
        assert!(
            !matches!(
                tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await,
                Ok(Some(_))
            ),
            "and no second call was made"
        );
    }
}
