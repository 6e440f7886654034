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
mod settings;
mod trace_context;

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use export::{ExportConfig, ExportConfigError, Protocol, Target, VARIABLES as OTEL_VARIABLES};
pub use init::{InitError, Options, Telemetry, init, init_logging, init_with, pseudonym, recorded};
pub use settings::TelemetrySettings;
pub use trace_context::{TraceContext, continue_trace, inject_span, recording};

/// Names of the metrics the shared crates record.
pub mod names {
    use metrics::Unit;

    /// Histogram (seconds) of BFF requests, by `http.route`, `http.request.method`, `http.response.status_code`.
    pub const SERVER_DURATION: &str = "http.server.request.duration";
    /// Gauge of requests being served.
    pub const SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
    /// Gauge of open client connections (HTTP/1.1 and HTTP/2).
    pub const SERVER_CONNECTIONS: &str = "bff.server.connections";
    /// Gauge of the limit on API requests worked on at once, as adapted to
    /// their latency (`BFF_MAX_IN_FLIGHT` is its ceiling).
    pub const SERVER_IN_FLIGHT_LIMIT: &str = "bff.server.in_flight.limit";
    /// Gauge of API requests worked on, by admission `class`.
    pub const SERVER_IN_FLIGHT: &str = "bff.server.in_flight";
    /// Gauge of API requests waiting for a place.
    pub const SERVER_QUEUED: &str = "bff.server.queued";
    /// Counter of API requests refused at admission, by `reason` (`full`, `queue_timeout`) and `class`.
    pub const SERVER_REFUSED: &str = "bff.server.refused";
    /// Histogram (seconds) of REST and GraphQL upstream calls, by `upstream`, `operation`, `outcome`, `http.request.method`, `server.address`, `http.response.status_code` and, on failure, `error.type`.
    pub const CLIENT_DURATION: &str = "http.client.request.duration";
    /// Histogram (seconds) of gRPC upstream calls, by `upstream`, `operation`, `outcome`, `rpc.system.name` (`grpc`), `rpc.method` (`package.Service/Method`), `rpc.status_code` (`OK`, `UNAVAILABLE`, …) and `server.address`.
    pub const RPC_CLIENT_DURATION: &str = "rpc.client.call.duration";
    /// Gauge of each upstream's bulkhead use: calls in flight over the limit (0 to 1).
    pub const BULKHEAD_SATURATION: &str = "bff.upstream.bulkhead.saturation";
    /// Gauge of each upstream's limit on calls in flight, as adapted to its latency.
    pub const BULKHEAD_LIMIT: &str = "bff.upstream.bulkhead.limit";
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
    /// Counter of shared-tier fragments that did not decode as their kind's value (never served; replaced by the next load), by `kind`.
    pub const CACHE_UNDECODABLE: &str = "bff.cache.undecodable";
    /// Counter of fragment loads, by `kind` and `trigger` (`miss`, `refresh`) and `source` (`upstream`, `replica`: another replica's copy arrived while waiting on its lock).
    pub const CACHE_LOADS: &str = "bff.cache.loads";
    /// Counter of requests refused for their token, by `reason` (`missing`, `not_bearer`, `malformed`, `expired`, `audience`, `signature`, …).
    pub const AUTH_REJECTED: &str = "bff.auth.rejected";
    /// Counter of requests refused by a rate limit, by `bff`, `tier` and `client` (a partner's client id, `user`, or `anonymous`).
    pub const RATE_LIMITED: &str = "bff.ratelimit.limited";
    /// Counter of quota units charged to answered requests, by `bff`, `tier` and `client`, where a BFF declares what a request costs (a partner's batch of 50 ids costs 50).
    pub const RATE_LIMIT_COST: &str = "bff.ratelimit.cost";
    /// Counter of feature-flag evaluations, by `bff`, `flag` and `variant` (`default` when the flag could not be evaluated).
    pub const FLAG_EVALUATIONS: &str = "bff.flag.evaluations";
    /// Counter of flag refreshes from the shared store that failed or were refused, by `reason` (`unavailable`, `invalid`); the last known values stay in force.
    pub const FLAG_REFRESH_ERRORS: &str = "bff.flag.refresh.errors";
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

    /// Gauge of open live-update streams, by `transport` (`sse`, `websocket`).
    pub const LIVE_STREAMS: &str = "bff.live.streams";
    /// Counter of live events sent to clients, by `type`.
    pub const LIVE_EVENTS: &str = "bff.live.events";
    /// Counter of live events a client did not get one by one, by `reason` (`lagged`: it read too slowly and got the latest state instead; `resume_window`: it resumed from outside the replay window).
    pub const LIVE_DROPS: &str = "bff.live.drops";
    /// Counter of live streams refused before opening, by `reason` (`subject_limit`, `replica_limit`, `draining`).
    pub const LIVE_REFUSED: &str = "bff.live.refused";
    /// Counter of live streams ended by the server, by `reason` (`token_expired`, `max_lifetime`, `idle`, `shutdown`).
    pub const LIVE_ENDED: &str = "bff.live.ended";
    /// Counter of reconnections to upstream event streams, by `source` (`stock`, `prices`).
    pub const LIVE_UPSTREAM_RECONNECTS: &str = "bff.live.upstream.reconnects";

    /// What a metric is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// Only goes up (`_total` in Prometheus).
        Counter,
        /// Goes up and down.
        Gauge,
        /// A distribution (`_bucket`, `_sum`, `_count` in Prometheus).
        Histogram,
    }

    /// Every metric: name, kind, unit, description. The unit becomes the
    /// Prometheus name's suffix and the OTLP instrument's unit.
    pub const CATALOGUE: &[(&str, Kind, Option<Unit>, &str)] = &[
        (
            SERVER_DURATION,
            Kind::Histogram,
            Some(Unit::Seconds),
            "Duration of HTTP server requests.",
        ),
        (
            SERVER_ACTIVE_REQUESTS,
            Kind::Gauge,
            None,
            "Number of active HTTP server requests.",
        ),
        (
            SERVER_CONNECTIONS,
            Kind::Gauge,
            None,
            "Open client connections.",
        ),
        (
            SERVER_IN_FLIGHT_LIMIT,
            Kind::Gauge,
            None,
            "API requests worked on at once at most, as adapted to their latency.",
        ),
        (
            SERVER_IN_FLIGHT,
            Kind::Gauge,
            None,
            "API requests worked on, by admission class.",
        ),
        (
            SERVER_QUEUED,
            Kind::Gauge,
            None,
            "API requests waiting for a place.",
        ),
        (
            SERVER_REFUSED,
            Kind::Counter,
            None,
            "API requests refused at admission, by reason and class.",
        ),
        (
            CLIENT_DURATION,
            Kind::Histogram,
            Some(Unit::Seconds),
            "Duration of HTTP client requests to upstreams.",
        ),
        (
            RPC_CLIENT_DURATION,
            Kind::Histogram,
            Some(Unit::Seconds),
            "Duration of gRPC calls to upstreams.",
        ),
        (
            BULKHEAD_SATURATION,
            Kind::Gauge,
            None,
            "Share of an upstream's bulkhead in use (0 to 1).",
        ),
        (
            BULKHEAD_LIMIT,
            Kind::Gauge,
            None,
            "Calls in flight to an upstream at most, as adapted to its latency.",
        ),
        (LIVE_STREAMS, Kind::Gauge, None, "Open live-update streams."),
        (
            LIVE_EVENTS,
            Kind::Counter,
            None,
            "Live events sent to clients.",
        ),
        (
            LIVE_DROPS,
            Kind::Counter,
            None,
            "Live events a client got as the latest state instead of one by one.",
        ),
        (
            LIVE_REFUSED,
            Kind::Counter,
            None,
            "Live streams refused before opening.",
        ),
        (
            LIVE_ENDED,
            Kind::Counter,
            None,
            "Live streams ended by the server.",
        ),
        (
            LIVE_UPSTREAM_RECONNECTS,
            Kind::Counter,
            None,
            "Reconnections to upstream event streams.",
        ),
        (
            CIRCUIT_TRANSITIONS,
            Kind::Counter,
            None,
            "Circuit breaker transitions, by the state entered.",
        ),
        (RETRIES, Kind::Counter, None, "Upstream retries, by result."),
        (
            COALESCED_CALLS,
            Kind::Counter,
            None,
            "Calls that joined an identical call in flight.",
        ),
        (
            SHED_CALLS,
            Kind::Counter,
            None,
            "Calls shed by a full bulkhead.",
        ),
        (
            BATCH_SIZE,
            Kind::Histogram,
            None,
            "Keys per batched upstream call.",
        ),
        (
            CIRCUIT_STATE,
            Kind::Gauge,
            None,
            "Circuit state per upstream: 0 closed, 1 half-open, 2 open.",
        ),
        (
            CACHE_LOOKUPS,
            Kind::Counter,
            None,
            "Section cache lookups, by result.",
        ),
        (
            CACHE_FRAGMENTS,
            Kind::Counter,
            None,
            "Fragment lookups, by result and tier.",
        ),
        (
            CACHE_INVALIDATIONS,
            Kind::Counter,
            None,
            "Fragment invalidations.",
        ),
        (
            CACHE_SHARED_ERRORS,
            Kind::Counter,
            None,
            "Failed calls to the shared cache tier.",
        ),
        (
            CACHE_SHARED_DURATION,
            Kind::Histogram,
            Some(Unit::Seconds),
            "Duration of calls to the shared cache tier.",
        ),
        (
            CACHE_STALE_SERVED,
            Kind::Counter,
            None,
            "Fragments served although not fresh.",
        ),
        (
            CACHE_EVICTIONS,
            Kind::Counter,
            None,
            "Fragments the local tier dropped.",
        ),
        (CACHE_LOADS, Kind::Counter, None, "Fragment loads."),
        (
            CACHE_UNDECODABLE,
            Kind::Counter,
            None,
            "Shared-tier fragments that did not decode (never served).",
        ),
        (
            AUTH_REJECTED,
            Kind::Counter,
            None,
            "Requests refused for their token, by reason.",
        ),
        (
            RATE_LIMITED,
            Kind::Counter,
            None,
            "Requests refused by a rate limit.",
        ),
        (
            RATE_LIMIT_COST,
            Kind::Counter,
            None,
            "Quota units charged to answered requests, by tier and client.",
        ),
        (
            FLAG_EVALUATIONS,
            Kind::Counter,
            None,
            "Feature-flag evaluations, by flag and variant.",
        ),
        (
            FLAG_REFRESH_ERRORS,
            Kind::Counter,
            None,
            "Flag refreshes from the shared store that failed (the last known values stay).",
        ),
        (
            RATE_LIMIT_SHARED_ERRORS,
            Kind::Counter,
            None,
            "Rate-limit checks the shared tier did not answer.",
        ),
        (
            RATE_LIMIT_SHARED_DURATION,
            Kind::Histogram,
            Some(Unit::Seconds),
            "Duration of rate-limit checks in the shared tier.",
        ),
        (
            API_VERSION_CALLS,
            Kind::Counter,
            None,
            "API calls by version and client.",
        ),
        (
            PARTIAL_RESPONSES,
            Kind::Counter,
            None,
            "Responses served with at least one failed section.",
        ),
        (
            SECTION_FAILURES,
            Kind::Counter,
            None,
            "Section failures, by section and reason.",
        ),
    ];

    /// The name a metric has in Prometheus form (`http_server_request_duration_seconds`,
    /// `bff_auth_rejected_total`): what dashboards and alerts query.
    pub fn prometheus_name(name: &str, kind: Kind, unit: Option<Unit>) -> String {
        let mut out = name.replace('.', "_");
        if unit == Some(Unit::Seconds) {
            out.push_str("_seconds");
        }
        if kind == Kind::Counter {
            out.push_str("_total");
        }
        out
    }

    pub(crate) fn describe() {
        for (name, kind, unit, description) in CATALOGUE {
            let (name, description) = (*name, *description);
            match (kind, unit) {
                (Kind::Counter, Some(u)) => metrics::describe_counter!(name, *u, description),
                (Kind::Counter, None) => metrics::describe_counter!(name, description),
                (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, *u, description),
                (Kind::Gauge, None) => metrics::describe_gauge!(name, description),
                (Kind::Histogram, Some(u)) => metrics::describe_histogram!(name, *u, description),
                (Kind::Histogram, None) => metrics::describe_histogram!(name, description),
            }
        }
    }
}

/// Latency buckets (seconds): the semantic conventions' advice for HTTP
/// durations (5 ms to 10 s) with sub-5 ms buckets added, because a gateway's
/// own latency and a cached section live below 5 ms.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The `http.request.method` attribute of `method`: the method when it is
/// one of HTTP's nine, else `_OTHER` (as the semantic conventions ask), so
/// a client cannot create series by inventing methods. `'static`, so the
/// label costs no allocation.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

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

#[cfg(test)]
mod tests {
    use super::method_label;
    use http::Method;

    #[test]
    fn method_labels_are_bounded() {
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
        ] {
            let parsed = Method::from_bytes(method.as_bytes()).expect("method");
            assert_eq!(method_label(&parsed), method);
        }
        for invented in ["PURGE", "get", "X-ANYTHING"] {
            let parsed = Method::from_bytes(invented.as_bytes()).expect("method");
            assert_eq!(method_label(&parsed), "_OTHER", "{invented}");
        }
    }
}
