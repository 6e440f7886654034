//! Telemetry shared by every BFF (and the demo services): the log
//! subscriber, W3C trace context on OpenTelemetry's propagators, spans
//! exported over OTLP when configured, and the process-wide metrics recorder
//! (Prometheus at `/metrics`, and OTLP when configured).
//!
//! Metric names and attribute keys follow the OpenTelemetry semantic
//! conventions (`http.server.request.duration` with `http.route`, …). The
//! Prometheus rendering follows the OpenTelemetry-to-Prometheus rules: dots
//! become underscores, the unit is a suffix (`_seconds`) and counters end in
//! `_total`, so a dashboard reads the same series whether it scrapes a BFF
//! or a collector that received them over OTLP.

#![warn(missing_docs)]

mod export;
mod init;
mod metrics_bridge;
mod trace_context;

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use export::{ExportConfig, ExportConfigError, Protocol, Target, VARIABLES as OTEL_VARIABLES};
pub use init::{InitError, Options, Telemetry, init, init_logging, init_with, pseudonym, recorded};
pub use trace_context::{TraceContext, continue_trace, extract, inject, inject_span, propagator};

/// Names of the metrics the shared crates record.
pub mod names {
    use metrics::Unit;

    /// Histogram (seconds) of BFF requests, by `http.route`, `http.request.method`, `http.response.status_code`.
    pub const SERVER_DURATION: &str = "http.server.request.duration";
    /// Gauge of requests being served.
    pub const SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
    /// Gauge of open client connections (HTTP/1.1 and HTTP/2).
    pub const SERVER_CONNECTIONS: &str = "bff.server.connections";
    /// Histogram (seconds) of REST and GraphQL upstream calls, by `upstream`, `operation`, `outcome`, `http.request.method`, `server.address`, `http.response.status_code` and, on failure, `error.type`.
    pub const CLIENT_DURATION: &str = "http.client.request.duration";
    /// Histogram (seconds) of gRPC upstream calls, by `upstream`, `operation`, `outcome`, `rpc.system.name` (`grpc`), `rpc.method` (`package.Service/Method`), `rpc.status_code` (`OK`, `UNAVAILABLE`, …) and `server.address`.
    pub const RPC_CLIENT_DURATION: &str = "rpc.client.call.duration";
    /// Gauge of each upstream's bulkhead use: calls in flight over the limit (0 to 1).
    pub const BULKHEAD_SATURATION: &str = "bff.upstream.bulkhead.saturation";
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

    /// What each metric is, and its unit (the unit becomes the Prometheus
    /// name's suffix and the OTLP instrument's unit).
    pub(crate) fn describe() {
        use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
        h!(
            SERVER_DURATION,
            Unit::Seconds,
            "Duration of HTTP server requests."
        );
        g!(
            SERVER_ACTIVE_REQUESTS,
            "Number of active HTTP server requests."
        );
        g!(SERVER_CONNECTIONS, "Open client connections.");
        h!(
            CLIENT_DURATION,
            Unit::Seconds,
            "Duration of HTTP client requests to upstreams."
        );
        h!(
            RPC_CLIENT_DURATION,
            Unit::Seconds,
            "Duration of gRPC calls to upstreams."
        );
        g!(
            BULKHEAD_SATURATION,
            "Share of an upstream's bulkhead in use (0 to 1)."
        );
        c!(
            CIRCUIT_TRANSITIONS,
            "Circuit breaker transitions, by the state entered."
        );
        c!(RETRIES, "Upstream retries, by result.");
        c!(
            COALESCED_CALLS,
            "Calls that joined an identical call in flight."
        );
        c!(SHED_CALLS, "Calls shed by a full bulkhead.");
        h!(BATCH_SIZE, "Keys per batched upstream call.");
        g!(
            CIRCUIT_STATE,
            "Circuit state per upstream: 0 closed, 1 half-open, 2 open."
        );
        c!(CACHE_LOOKUPS, "Section cache lookups, by result.");
        c!(CACHE_FRAGMENTS, "Fragment lookups, by result and tier.");
        c!(CACHE_INVALIDATIONS, "Fragment invalidations.");
        c!(
            CACHE_SHARED_ERRORS,
            "Failed calls to the shared cache tier."
        );
        h!(
            CACHE_SHARED_DURATION,
            Unit::Seconds,
            "Duration of calls to the shared cache tier."
        );
        c!(CACHE_STALE_SERVED, "Fragments served although not fresh.");
        c!(CACHE_EVICTIONS, "Fragments the local tier dropped.");
        c!(CACHE_LOADS, "Fragment loads.");
        c!(
            AUTH_REJECTED,
            "Requests refused for their token, by reason."
        );
        c!(RATE_LIMITED, "Requests refused by a rate limit.");
        c!(
            RATE_LIMIT_SHARED_ERRORS,
            "Rate-limit checks the shared tier did not answer."
        );
        h!(
            RATE_LIMIT_SHARED_DURATION,
            Unit::Seconds,
            "Duration of rate-limit checks in the shared tier."
        );
        c!(API_VERSION_CALLS, "API calls by version and client.");
        c!(
            PARTIAL_RESPONSES,
            "Responses served with at least one failed section."
        );
        c!(SECTION_FAILURES, "Section failures, by section and reason.");
    }
}

/// Latency buckets (seconds): the semantic conventions' advice for HTTP
/// durations (5 ms to 10 s) with sub-5 ms buckets added, because a gateway's
/// own latency and a cached section live below 5 ms.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use (without
/// OTLP export; [`init`] installs it with OTLP when configured).
///
/// One per process on purpose: the `metrics` facade has one global recorder,
/// and several apps in one test process share it.
pub fn prometheus() -> &'static PrometheusHandle {
    install_metrics(None).0
}

/// Installs the global recorder: Prometheus, and `otlp` beside it. Returns
/// the Prometheus handle and whether `otlp` was installed (not when a
/// recorder was installed before).
fn install_metrics(
    otlp: Option<metrics_bridge::OtelRecorder>,
) -> (&'static PrometheusHandle, bool) {
    let mut installed = false;
    let handle = PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .with_recommended_naming(true)
            .set_buckets_for_metric(Matcher::Suffix("duration".to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is already installed; ours then
        // renders empty, which the /metrics tests would catch.
        installed = match otlp {
            Some(otlp) => {
                let fanout = metrics_util::layers::FanoutBuilder::default()
                    .add_recorder(recorder)
                    .add_recorder(otlp)
                    .build();
                metrics::set_global_recorder(fanout).is_ok()
            }
            None => {
                let _ = metrics::set_global_recorder(recorder);
                false
            }
        };
        names::describe();
        handle
    });
    (handle, installed)
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
