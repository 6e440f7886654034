//! Resilient upstream calls, the same for every protocol.
//!
//! Every call a BFF makes goes through an [`Upstream`]: a named policy that
//! fails fast while the upstream's circuit is open, bounds how many calls are
//! in flight (a bulkhead, so one slow service cannot take every worker),
//! applies a deadline, and records a span and a latency histogram with the
//! outcome. The policy works on typed results ([`UpstreamError`]), which is
//! what makes it protocol-neutral: the REST and GraphQL clients (one pooled
//! reqwest client) and the gRPC clients (tonic channels) all map their
//! failures into the same [`Failure`] kinds before the policy sees them.

#![warn(missing_docs)]

mod circuit;
mod context;
mod error;
mod graphql;
pub mod grpc;
mod policy;
mod rest;

pub use circuit::{BreakerConfig, CircuitBreaker, CircuitState};
pub use context::CallContext;
pub use error::{Failure, UpstreamError};
pub use graphql::GraphQlClient;
pub use policy::{Upstream, UpstreamPolicy};
pub use rest::{HttpClient, MAX_BODY_BYTES, RestClient};
