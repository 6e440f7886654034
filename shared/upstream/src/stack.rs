//! One upstream: its policy, composed as a tower stack once at start-up.

use std::sync::Arc;
use std::time::Duration;

use tower::ServiceBuilder;
use tower::retry::RetryLayer;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::call::{Protocol, UpstreamRequest, UpstreamResponse, UpstreamService};
use crate::circuit::{BreakerConfig, CircuitBreaker, CircuitState};
use crate::error::UpstreamError;
use crate::layers::CallService;
use crate::layers::breaker::BreakerLayer;
use crate::layers::bulkhead::{BulkheadConfig, BulkheadLayer};
use crate::layers::coalesce::CoalesceLayer;
use crate::layers::deadline::DeadlineLayer;
use crate::layers::hedge::HedgeLayer;
use crate::layers::observe::ObserveLayer;
use crate::layers::retry::{RetryConfig, RetryPolicy};

/// Tuning of one upstream; every field has a configuration key (see the
/// README's table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpstreamPolicy {
    /// Longest a call may take (a section's budget may cut it shorter).
    pub timeout: Duration,
    /// A call is not started with less than this left of its budget.
    pub min_budget: Duration,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Calls in flight at most; more are shed at once.
    pub max_concurrency: usize,
    /// Whether the limit on calls in flight follows the upstream's latency
    /// below `max_concurrency` ([`crate::layers::bulkhead`]).
    pub adaptive_concurrency: bool,
    /// Percent of the limit kept for critical calls.
    pub critical_reserve: u8,
    /// Retries of idempotent calls.
    pub retry: RetryConfig,
    /// Whether identical reads in flight share one call.
    pub coalesce: bool,
    /// Hedge idempotent reads slower than this percentile (0 to 100) of
    /// recent calls; `None`: no hedging.
    pub hedge_percentile: Option<u8>,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            timeout: Duration::from_secs(2),
            min_budget: Duration::from_millis(5),
            breaker: BreakerConfig::default(),
            max_concurrency: 256,
            adaptive_concurrency: true,
            critical_reserve: 20,
            retry: RetryConfig::default(),
            coalesce: true,
            hedge_percentile: None,
        }
    }
}

/// One upstream: its name, protocol, circuit and stack. Cheap to clone
/// (one reference count), so a call's future can own it.
#[derive(Debug, Clone)]
pub struct Upstream(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    name: &'static str,
    protocol: Protocol,
    breaker: Arc<CircuitBreaker>,
    service: UpstreamService,
}

impl Upstream {
    /// Composes the stack of `name` over `transport`, outermost first:
    /// deadline → observe → coalesce → retry → breaker → hedge (opt-in) →
    /// bulkhead → transport. Metrics see every call, including one abandoned at its
    /// deadline (their guard records on drop); the breaker sees every
    /// attempt, retries included; coalesced waiters cost the upstream
    /// nothing, so they sit above retry and breaker.
    pub fn new<T: CallService>(
        name: &'static str,
        protocol: Protocol,
        policy: UpstreamPolicy,
        transport: T,
    ) -> Self {
        let breaker = CircuitBreaker::new(name, policy.breaker);
        let service = ServiceBuilder::new()
            .layer(DeadlineLayer::new(name, policy.timeout, policy.min_budget))
            .layer(ObserveLayer::new(name, protocol))
            .option_layer(policy.coalesce.then(|| CoalesceLayer::new(name)))
            .layer(RetryLayer::new(RetryPolicy::new(name, policy.retry)))
            .layer(BreakerLayer::new(name, breaker.clone()))
            .option_layer(
                policy
                    .hedge_percentile
                    .map(|p| HedgeLayer::new(name, f32::from(p.min(100)) / 100.0)),
            )
            .layer(BulkheadLayer::new(
                name,
                BulkheadConfig {
                    max: policy.max_concurrency,
                    critical_reserve: policy.critical_reserve,
                    adaptive: policy.adaptive_concurrency,
                },
            ))
            .service(transport);
        Upstream(Arc::new(Parts {
            name,
            protocol,
            breaker,
            service: BoxCloneSyncService::new(service),
        }))
    }

    /// The upstream's name (`user`, `product`, …).
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// Its wire protocol.
    pub fn protocol(&self) -> Protocol {
        self.0.protocol
    }

    /// The state of its circuit.
    pub fn circuit_state(&self) -> CircuitState {
        self.0.breaker.state()
    }

    /// Sends one call through the stack.
    pub async fn call(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let mut service = self.0.service.clone();
        // Ready at once, except behind the hedge's buffer when it is full.
        service.ready().await?;
        service.call(request).await
    }
}
