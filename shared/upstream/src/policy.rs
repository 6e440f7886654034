//! The policy every upstream call goes through.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::circuit::{BreakerConfig, CircuitBreaker, CircuitState};
use crate::error::{Failure, UpstreamError};
use bff_telemetry::names;

/// Tuning of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// Deadline of one call (a section's own deadline may cut it shorter).
    pub timeout: Duration,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Calls in flight at most; more are shed at once.
    pub max_concurrency: usize,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            timeout: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
            max_concurrency: 256,
        }
    }
}

/// One upstream: its name, policy and live state. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Upstream {
    name: &'static str,
    policy: UpstreamPolicy,
    breaker: CircuitBreaker,
    bulkhead: Semaphore,
}

impl Upstream {
    /// A new upstream with a closed circuit.
    pub fn new(name: &'static str, policy: UpstreamPolicy) -> Arc<Self> {
        metrics::gauge!(names::CIRCUIT_STATE, "upstream" => name).set(CircuitState::Closed.gauge());
        Arc::new(Upstream {
            name,
            policy,
            breaker: CircuitBreaker::new(policy.breaker),
            bulkhead: Semaphore::new(policy.max_concurrency.max(1)),
        })
    }

    /// The upstream's name (`user`, `product`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The state of its circuit.
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Runs one call under the policy: circuit check, bulkhead, deadline,
    /// then span, histogram and circuit accounting of the outcome.
    pub async fn call<T, F>(&self, operation: &'static str, call: F) -> Result<T, UpstreamError>
    where
        F: Future<Output = Result<T, UpstreamError>>,
    {
        let started = Instant::now();
        let span = tracing::debug_span!(
            "upstream",
            upstream = self.name,
            operation,
            outcome = tracing::field::Empty
        );
        let result = self.guarded(call).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.failure.reason(),
        };
        span.record("outcome", outcome);
        metrics::histogram!(
            names::CLIENT_DURATION,
            "upstream" => self.name,
            "operation" => operation,
            "outcome" => outcome
        )
        .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            tracing::debug!(upstream = self.name, operation, %error, "upstream call failed");
        }
        result
    }

    async fn guarded<T, F>(&self, call: F) -> Result<T, UpstreamError>
    where
        F: Future<Output = Result<T, UpstreamError>>,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            return Err(UpstreamError::new(
                self.name,
                Failure::CircuitOpen,
                "circuit open",
            ));
        };
        let Ok(_slot) = self.bulkhead.try_acquire() else {
            // Not the upstream's fault: dropping the permit unsettled leaves
            // the circuit as it was.
            drop(permit);
            return Err(UpstreamError::new(
                self.name,
                Failure::Shed,
                "bulkhead full",
            ));
        };
        let result = match tokio::time::timeout(self.policy.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::new(
                self.name,
                Failure::Timeout,
                format!("no answer within {:?}", self.policy.timeout),
            )),
        };
        let healthy = match &result {
            Ok(_) => true,
            Err(e) => !e.failure.counts_against_circuit(),
        };
        self.settle(permit, healthy);
        result
    }

    fn settle(&self, permit: crate::circuit::Permit<'_>, success: bool) {
        let state = permit.record(success);
        metrics::gauge!(names::CIRCUIT_STATE, "upstream" => self.name).set(state.gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(threshold: u32, timeout: Duration) -> Arc<Upstream> {
        Upstream::new(
            "test",
            UpstreamPolicy {
                timeout,
                breaker: BreakerConfig {
                    failure_threshold: threshold,
                    open_for: Duration::from_secs(60),
                },
                max_concurrency: 2,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_turns_a_hang_into_a_timeout() {
        let u = upstream(5, Duration::from_millis(100));
        let err = u
            .call("op", std::future::pending::<Result<(), UpstreamError>>())
            .await
            .expect_err("timeout");
        assert_eq!(err.failure, Failure::Timeout);
    }

    #[tokio::test]
    async fn failures_open_the_circuit_and_then_calls_fail_fast() {
        let u = upstream(2, Duration::from_secs(1));
        for _ in 0..2 {
            let r = u
                .call("op", async {
                    Err::<(), _>(UpstreamError::new("test", Failure::Unavailable, "refused"))
                })
                .await;
            assert_eq!(r.expect_err("fails").failure, Failure::Unavailable);
        }
        assert_eq!(u.circuit_state(), CircuitState::Open);
        let r = u.call("op", async { Ok::<_, UpstreamError>(1) }).await;
        assert_eq!(r.expect_err("not attempted").failure, Failure::CircuitOpen);
    }

    #[tokio::test]
    async fn not_found_does_not_count_against_the_circuit() {
        let u = upstream(1, Duration::from_secs(1));
        let _ = u
            .call("op", async {
                Err::<(), _>(UpstreamError::new("test", Failure::NotFound, "404"))
            })
            .await;
        assert_eq!(u.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn the_bulkhead_sheds_what_does_not_fit() {
        let u = upstream(5, Duration::from_secs(5));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let hold = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
            Ok::<_, UpstreamError>(())
        };
        let a = tokio::spawn({
            let u = u.clone();
            let rx = rx.clone();
            async move { u.call("op", hold(rx)).await }
        });
        let b = tokio::spawn({
            let u = u.clone();
            let rx = rx.clone();
            async move { u.call("op", hold(rx)).await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let shed = u.call("op", async { Ok::<_, UpstreamError>(()) }).await;
        assert_eq!(shed.expect_err("shed").failure, Failure::Shed);
        tx.send_replace(true);
        assert!(a.await.expect("task").is_ok() && b.await.expect("task").is_ok());
        assert_eq!(
            u.circuit_state(),
            CircuitState::Closed,
            "shedding never opens the circuit"
        );
    }
}
