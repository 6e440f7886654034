//! Hedge: for idempotent reads on upstreams that opt in, a second copy of
//! a call is sent when the first has taken longer than a latency percentile
//! of recent calls; whichever answers first wins, the other is dropped.
//!
//! Why: a tail of slow answers (a GC pause, a cold cache on one replica)
//! costs the whole response its latency; a hedge at the 95th percentile
//! costs about 5% more calls and cuts that tail. Off by default: it only
//! pays where an upstream is replicated and reads are cheap.
//!
//! It is tower's [`Hedge`] (which keeps the latency histogram), sitting
//! *below* the breaker so that the breaker judges the hedged call once and a
//! dropped loser is not mistaken for an abandoned call. tower's hedge
//! service cannot be cloned, so it runs behind a [`Buffer`]: a channel hop
//! that only opted-in upstreams pay.

use std::time::Duration;

use tower::buffer::Buffer;
use tower::hedge::{Hedge, Policy};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, ServiceExt};

use super::CallService;
use crate::call::UpstreamRequest;
use crate::call::UpstreamService;
use crate::error::{Failure, UpstreamError};

/// Recent calls needed before any hedge is sent.
const MIN_DATA_POINTS: u64 = 20;

/// The hedge delay is read from the latencies of the previous period of
/// this length (tower's histogram rotates): short enough to follow a change
/// in the upstream within seconds.
const PERIOD: Duration = Duration::from_secs(2);

/// Calls waiting for the hedge service at most.
const BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct ReadsOnly;

impl Policy<UpstreamRequest> for ReadsOnly {
    fn clone_request(&self, request: &UpstreamRequest) -> Option<UpstreamRequest> {
        request.info.idempotent.then(|| request.clone())
    }

    fn can_retry(&self, request: &UpstreamRequest) -> bool {
        request.info.idempotent
    }
}

/// Applies hedging at `percentile` (0 to 1) of recent latencies.
#[derive(Debug, Clone, Copy)]
pub struct HedgeLayer {
    upstream: &'static str,
    percentile: f32,
}

impl HedgeLayer {
    /// Hedges the reads of `upstream` slower than `percentile` (e.g. 0.95).
    pub fn new(upstream: &'static str, percentile: f32) -> Self {
        HedgeLayer {
            upstream,
            percentile,
        }
    }
}

fn typed(upstream: &'static str, error: BoxError) -> UpstreamError {
    match error.downcast::<UpstreamError>() {
        Ok(error) => *error,
        Err(other) => UpstreamError::new(upstream, Failure::Unavailable, other.to_string()),
    }
}

impl<S: CallService> Layer<S> for HedgeLayer {
    type Service = UpstreamService;

    fn layer(&self, inner: S) -> UpstreamService {
        let upstream = self.upstream;
        let hedge = Hedge::new(inner, ReadsOnly, MIN_DATA_POINTS, self.percentile, PERIOD);
        let buffered = Buffer::new(hedge, BUFFER);
        BoxCloneSyncService::new(buffered.map_err(move |e| typed(upstream, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::test_request;

    #[test]
    fn only_reads_are_copied_or_sent_again() {
        let mut write = test_request();
        write.info.idempotent = false;
        let mut read = test_request();
        read.info.idempotent = true;
        assert!(
            ReadsOnly.clone_request(&write).is_none(),
            "a write is never sent twice"
        );
        assert!(!ReadsOnly.can_retry(&write));
        let copy = ReadsOnly.clone_request(&read).expect("a read is copied");
        assert_eq!(copy.target, read.target);
        assert_eq!(copy.body, read.body);
        assert!(ReadsOnly.can_retry(&read));
    }
}
