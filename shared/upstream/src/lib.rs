//! Resilient upstream calls, the same for every protocol.
//!
//! Every call a BFF makes goes through its upstream's tower stack, built
//! once at start-up ([`Upstream::new`]), outermost first:
//!
//! | layer | what it does |
//! | --- | --- |
//! | [`layers::deadline`] | `min(policy timeout, section budget)`; no call starts with less than the minimum left |
//! | [`layers::observe`] | span and latency histogram with the outcome, recorded even when abandoned |
//! | [`layers::coalesce`] | identical reads in flight share one call |
//! | [`layers::retry`] | idempotent calls retried with jittered backoff under a budget |
//! | [`layers::breaker`] | failure-rate and slow-call-rate circuit breaker ([`circuit`]) |
//! | [`layers::bulkhead`] | calls in flight bounded, optional ones shed first |
//! | [`transport`] | hyper's pooled client (REST, GraphQL; reqwest for HTTPS) or a tonic channel (gRPC); classifies and decodes |
//!
//! The layers see one request type ([`UpstreamRequest`]) whatever the
//! protocol, which is what lets one policy serve REST, GraphQL and gRPC
//! alike. The typed clients ([`RestClient`], [`GraphQlClient`],
//! [`GrpcClient`]) build requests; the [`Registry`] builds the stacks of the
//! upstreams a BFF declares ([`UpstreamDecl`]); [`BatchLoader`] turns
//! single-key loads into batch calls; [`budget`] carries the section's
//! deadline to every call made for it.

#![warn(missing_docs)]

pub mod backoff;
pub mod budget;
pub mod call;
pub mod circuit;
mod client;
mod context;
mod error;
pub mod layers;
mod loader;
mod registry;
mod settings;
mod stack;
pub mod transport;

pub use backoff::Backoff;
pub use budget::Criticality;
pub use call::{CallInfo, Protocol, Target, UpstreamRequest, UpstreamResponse, UpstreamService};
pub use circuit::{BreakerConfig, CircuitBreaker, CircuitState};
pub use client::{GraphQlClient, GrpcClient, RestClient};
pub use context::CallContext;
pub use error::{Failure, UpstreamError};
pub use layers::retry::RetryConfig;
pub use loader::BatchLoader;
pub use registry::{Registry, RegistryError, UpstreamDecl, UpstreamSettings};
pub use settings::UpstreamsConfig;
pub use stack::{Upstream, UpstreamPolicy};
pub use transport::MAX_BODY_BYTES;
pub use transport::http::HttpClient;
