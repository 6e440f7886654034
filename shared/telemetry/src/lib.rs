//! Telemetry shared by every BFF: the log subscriber, W3C trace context, and
//! the process-wide Prometheus recorder.
//!
//! Metric names follow the OpenTelemetry semantic conventions
//! (`http.server.request.duration`, `http.client.request.duration`, …); the
//! Prometheus exporter renders the dots as underscores.

#![warn(missing_docs)]

mod trace_context;

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use trace_context::TraceContext;

/// Names of the metrics the shared crates record.
pub mod names {
    /// Histogram (seconds) of BFF requests, by `http_route`, `http_request_method`, `http_response_status_code`.
    pub const SERVER_DURATION: &str = "http.server.request.duration";
    /// Histogram (seconds) of upstream calls, by `upstream`, `operation`, `outcome`.
    pub const CLIENT_DURATION: &str = "http.client.request.duration";
    /// Histogram (seconds) of gRPC upstream calls, by `upstream`, `operation`, `outcome`.
    pub const RPC_CLIENT_DURATION: &str = "rpc.client.call.duration";
    /// Counter of circuit transitions, by `upstream` and the `state` entered.
    pub const CIRCUIT_TRANSITIONS: &str = "bff.upstream.circuit.transitions";
    /// Counter of retries, by `upstream` and `result` (`retried`, `budget_exhausted`).
    pub const RETRIES: &str = "bff.upstream.retries";
    /// Counter of calls that joined an identical call in flight, by `upstream`.
    pub const COALESCED_CALLS: &str = "bff.upstream.coalesced";
    /// Counter of calls shed by a full bulkhead, by `upstream`.
    pub const SHED_CALLS: &str = "bff.upstream.shed";
    /// Histogram of keys per batch call, by `loader`.
    pub const BATCH_SIZE: &str = "bff.upstream.batch.size";
    /// Gauge of each upstream's circuit: 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_STATE: &str = "bff.upstream.circuit.state";
    /// Counter of fragment-cache lookups, by `section` and `result` (`hit`, `miss`, `stale`).
    pub const CACHE_LOOKUPS: &str = "bff.cache.lookups";
    /// Counter of two-tier fragment lookups, by `kind`, `result` (`hit`, `miss`, `stale`) and `tier` (`local`, `shared`, `none`).
    pub const CACHE_FRAGMENTS: &str = "bff.cache.fragments";
    /// Counter of fragment invalidations, by `by` (`key`, `tag`, `event`).
    pub const CACHE_INVALIDATIONS: &str = "bff.cache.invalidations";
    /// Counter of failed calls to the shared (Redis) tier, by `op`.
    pub const CACHE_SHARED_ERRORS: &str = "bff.cache.shared.errors";
    /// Histogram (seconds) of calls to the shared (Redis) tier, by `op`.
    pub const CACHE_SHARED_DURATION: &str = "bff.cache.shared.duration";
    /// Counter of fragments served although not fresh, by `kind` and `reason` (`revalidating`, `upstream_error`).
    pub const CACHE_STALE_SERVED: &str = "bff.cache.stale_served";
    /// Counter of fragments the local tier dropped by itself, by `kind` and `cause` (`size`, `expired`).
    pub const CACHE_EVICTIONS: &str = "bff.cache.evictions";
    /// Counter of fragment loads, by `kind` and `trigger` (`miss`, `refresh`) and `source` (`upstream`, `replica`: another replica's copy arrived while waiting on its lock).
    pub const CACHE_LOADS: &str = "bff.cache.loads";
    /// Counter of requests refused for their token, by `reason` (`missing`, `not_bearer`, `malformed`, `expired`, `audience`, `signature`, …).
    pub const AUTH_REJECTED: &str = "bff.auth.rejected";
    /// Counter of requests refused by a rate limit, by `bff`, `tier` and `client` (a partner's client id, `user`, or `anonymous`).
    pub const RATE_LIMITED: &str = "bff.ratelimit.limited";
    /// Counter of rate-limit checks Redis did not answer (the local limiter answered).
    pub const RATE_LIMIT_SHARED_ERRORS: &str = "bff.ratelimit.shared.errors";
    /// Histogram (seconds) of rate-limit checks in Redis.
    pub const RATE_LIMIT_SHARED_DURATION: &str = "bff.ratelimit.shared.duration";
    /// Counter of API calls, by `bff`, `version` and `client`: when a version can be switched off.
    pub const API_VERSION_CALLS: &str = "bff.api.version.calls";
    /// Counter of responses served with at least one failed section, by `route`.
    pub const PARTIAL_RESPONSES: &str = "bff.aggregate.partial_responses";
    /// Counter of section failures, by `section` and `reason`.
    pub const SECTION_FAILURES: &str = "bff.aggregate.section_failures";
}

/// Latency buckets (seconds) fine enough to read a sub-millisecond p99 and
/// wide enough for a two-second section deadline.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// One per process on purpose: the `metrics` facade has one global recorder,
/// and several apps in one test process share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration".to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is already installed; ours then
        // renders empty, which the /metrics tests would catch.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable, coloured.
    Pretty,
}

impl LogFormat {
    /// JSON when stdout is not a terminal, else pretty.
    pub fn detect() -> Self {
        if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }

    /// Parses `json` or `pretty`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            _ => None,
        }
    }
}

/// Installs the global log subscriber with `filter` (RUST_LOG syntax). A
/// second call is a no-op, so tests may call it freely.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
