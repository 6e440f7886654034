//! What can go wrong with an upstream call.

/// The kind of failure, which decides how the aggregation reports it and
/// whether it counts against the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed.
    Timeout,
    /// The circuit is open: the call was not attempted.
    CircuitOpen,
    /// Connection refused, reset, or another transport failure.
    Unavailable,
    /// The upstream answered with an error status.
    Status(u16),
    /// The upstream says the resource does not exist.
    NotFound,
    /// The upstream refused the call for its own rate limit.
    RateLimited,
    /// Too many calls in flight to this upstream: dropped under overload.
    Shed,
    /// The upstream's answer could not be read (malformed, truncated or
    /// oversized body).
    InvalidResponse,
    /// A GraphQL answer that carried `errors` (even inside a `200 OK`).
    GraphQl,
}

impl Failure {
    /// The reason reported in a partial response's `metadata.reasons`.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::CircuitOpen => "circuit_open",
            Failure::Unavailable => "unavailable",
            Failure::Status(_) | Failure::InvalidResponse | Failure::GraphQl => "upstream_error",
            Failure::NotFound => "not_found",
            Failure::RateLimited => "rate_limited",
            Failure::Shed => "shed",
        }
    }

    /// The outcome label of metrics and spans (finer than [`reason`](Self::reason)).
    pub fn outcome(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::CircuitOpen => "circuit_open",
            Failure::Unavailable => "unavailable",
            Failure::Status(s) if s >= 500 => "server_error",
            Failure::Status(_) => "client_error",
            Failure::NotFound => "not_found",
            Failure::RateLimited => "rate_limited",
            Failure::Shed => "shed",
            Failure::InvalidResponse => "invalid_response",
            Failure::GraphQl => "graphql_error",
        }
    }

    /// Whether this outcome says the upstream is unhealthy: 5xx, 429,
    /// timeouts, resets, unreadable bodies and GraphQL errors do; a 404 or
    /// another 4xx is the caller's business, and a call that was refused
    /// here (open circuit, shed) never reached the upstream.
    pub fn counts_against_circuit(self) -> bool {
        match self {
            Failure::Timeout
            | Failure::Unavailable
            | Failure::InvalidResponse
            | Failure::GraphQl
            | Failure::RateLimited => true,
            Failure::Status(s) => s >= 500,
            Failure::CircuitOpen | Failure::NotFound | Failure::Shed => false,
        }
    }

    /// Whether another attempt may succeed where this one failed: the
    /// connection failed or the upstream said it is briefly unable to serve.
    /// Never after our own deadline, an open circuit or shedding.
    pub fn retryable(self) -> bool {
        matches!(self, Failure::Unavailable | Failure::Status(502..=504))
    }
}

/// A failed upstream call. The `detail` is for logs only: it may contain
/// URLs and upstream messages, which never reach a client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{upstream}: {} ({detail})", failure.reason())]
pub struct UpstreamError {
    /// Which upstream.
    pub upstream: &'static str,
    /// What kind of failure.
    pub failure: Failure,
    /// Internal detail, for logs.
    pub detail: String,
}

impl UpstreamError {
    /// An error of `failure` kind from `upstream`.
    pub fn new(upstream: &'static str, failure: Failure, detail: impl Into<String>) -> Self {
        UpstreamError {
            upstream,
            failure,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_circuit_accounting() {
        assert_eq!(Failure::Status(502).reason(), "upstream_error");
        assert!(Failure::Status(503).counts_against_circuit());
        assert!(!Failure::Status(400).counts_against_circuit());
        assert!(!Failure::NotFound.counts_against_circuit());
        assert!(!Failure::CircuitOpen.counts_against_circuit());
        assert!(Failure::Timeout.counts_against_circuit());
        assert!(
            Failure::GraphQl.counts_against_circuit(),
            "errors inside a 200"
        );
        assert!(Failure::RateLimited.counts_against_circuit());
        assert!(!Failure::Shed.counts_against_circuit());
        assert!(Failure::Unavailable.retryable() && Failure::Status(503).retryable());
        assert!(!Failure::Timeout.retryable() && !Failure::Status(500).retryable());
    }
}
