//! Retry: idempotent calls that failed in a way another attempt may fix
//! (connection refused or reset, 502/503/504) are sent again, after a
//! jittered exponential backoff, within the call's deadline, and only while
//! the upstream's retry budget allows.
//!
//! Why a budget and not a number of attempts: "retry 3 times" multiplies
//! the load on an upstream that is failing because of load. A budget (tower's
//! [`TpsBudget`]) lets retries add at most a share of the traffic (20% by
//! default, Linkerd's and Gateway API GEP-3388's figure) plus a small floor
//! per second so that a quiet upstream can still be retried.

use std::sync::Arc;
use std::time::Duration;

use bff_telemetry::names;
use rand::Rng;
use tokio::time::Instant;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;

/// Tuning of retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Retries at most per call (0: never retry).
    pub max_retries: u32,
    /// First backoff; doubled per attempt, with full jitter.
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Retries as a share of calls (0.2 = 20%).
    pub budget_ratio: f32,
    /// Retries per second always allowed.
    pub min_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            budget_ratio: 0.2,
            min_per_sec: 10,
        }
    }
}

/// The retry policy of one upstream (shared budget).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    upstream: &'static str,
    config: RetryConfig,
    budget: Arc<TpsBudget>,
}

impl RetryPolicy {
    /// A policy for `upstream`.
    pub fn new(upstream: &'static str, config: RetryConfig) -> Self {
        RetryPolicy {
            upstream,
            config,
            budget: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                config.min_per_sec,
                config.budget_ratio,
            )),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.max_backoff);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }
}

impl Policy<UpstreamRequest, UpstreamResponse, UpstreamError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut UpstreamRequest,
        result: &mut Result<UpstreamResponse, UpstreamError>,
    ) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if !request.info.idempotent
            || !error.failure.retryable()
            || request.info.attempt >= self.config.max_retries
        {
            return None;
        }
        let backoff = self.backoff(request.info.attempt);
        if request
            .info
            .deadline
            .is_some_and(|d| Instant::now() + backoff >= d)
        {
            return None;
        }
        if !self.budget.withdraw() {
            metrics::counter!(names::RETRIES, "upstream" => self.upstream, "result" => "budget_exhausted")
                .increment(1);
            return None;
        }
        request.info.attempt += 1;
        tracing::Span::current().record("http.request.resend_count", request.info.attempt);
        metrics::counter!(names::RETRIES, "upstream" => self.upstream, "result" => "retried")
            .increment(1);
        Some(tokio::time::sleep(backoff))
    }

    fn clone_request(&mut self, request: &UpstreamRequest) -> Option<UpstreamRequest> {
        if request.info.attempt == 0 {
            self.budget.deposit();
        }
        (request.info.idempotent && self.config.max_retries > 0).then(|| request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::test_request;
    use crate::error::Failure;

    fn request(idempotent: bool, deadline: Option<Instant>) -> UpstreamRequest {
        let mut request = test_request();
        request.info.idempotent = idempotent;
        request.info.deadline = deadline;
        request
    }

    fn failed(failure: Failure) -> Result<UpstreamResponse, UpstreamError> {
        Err(UpstreamError::new("t", failure, "x"))
    }

    fn policy(min_per_sec: u32) -> RetryPolicy {
        RetryPolicy::new(
            "t",
            RetryConfig {
                max_retries: 2,
                budget_ratio: 0.2,
                min_per_sec,
                ..RetryConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn only_idempotent_calls_that_may_succeed_are_retried_within_the_deadline() {
        let mut p = policy(10);
        let later = Some(Instant::now() + Duration::from_secs(5));
        let mut read = request(true, later);
        assert!(p.clone_request(&read).is_some());
        assert!(
            p.retry(&mut read, &mut failed(Failure::Unavailable))
                .is_some()
        );
        assert_eq!(read.info.attempt, 1);
        assert!(
            p.retry(&mut read, &mut failed(Failure::Status(503)))
                .is_some()
        );
        assert!(
            p.retry(&mut read, &mut failed(Failure::Unavailable))
                .is_none(),
            "two retries at most"
        );
        for failure in [
            Failure::Timeout,
            Failure::CircuitOpen,
            Failure::Shed,
            Failure::NotFound,
            Failure::Status(500),
        ] {
            let mut r = request(true, later);
            assert!(
                p.retry(&mut r, &mut failed(failure)).is_none(),
                "{failure:?}"
            );
        }
        let mut write = request(false, later);
        assert!(p.clone_request(&write).is_none());
        assert!(
            p.retry(&mut write, &mut failed(Failure::Unavailable))
                .is_none()
        );
        let mut due = request(true, Some(Instant::now()));
        assert!(
            p.retry(&mut due, &mut failed(Failure::Unavailable))
                .is_none(),
            "never past the deadline"
        );
    }

    #[tokio::test]
    async fn the_budget_caps_retries_at_a_share_of_calls() {
        let mut p = policy(0);
        let later = Some(Instant::now() + Duration::from_secs(5));
        let mut retried = 0;
        for _ in 0..100 {
            let mut r = request(true, later);
            let _ = p.clone_request(&r);
            if p.retry(&mut r, &mut failed(Failure::Unavailable)).is_some() {
                retried += 1;
            }
        }
        assert!(
            (1..=20).contains(&retried),
            "{retried} retries for 100 calls"
        );
    }
}
