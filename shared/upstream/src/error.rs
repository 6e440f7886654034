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
    /// The upstream's answer could not be read.
    InvalidResponse,
}

impl Failure {
    /// The reason reported in a partial response's `metadata.reasons`.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::CircuitOpen => "circuit_open",
            Failure::Unavailable => "unavailable",
            Failure::Status(_) | Failure::InvalidResponse => "upstream_error",
            Failure::NotFound => "not_found",
            Failure::RateLimited => "rate_limited",
            Failure::Shed => "shed",
        }
    }

    /// Whether this outcome says the upstream is unhealthy. A 404 or a 4xx
    /// is the caller's business, and a refused call was never attempted.
    pub fn counts_against_circuit(self) -> bool {
        match self {
            Failure::Timeout | Failure::Unavailable | Failure::InvalidResponse => true,
            Failure::Status(s) => s >= 500,
            Failure::CircuitOpen | Failure::NotFound | Failure::RateLimited | Failure::Shed => {
                false
            }
        }
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
    }
}
