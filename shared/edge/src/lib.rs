//! The HTTP edge every BFF shares: everything between the socket and the
//! handler that is not specific to one client.
//!
//! - [`config`]: one typed configuration per binary, from defaults, an
//!   optional TOML file and the environment; a bad value stops the process
//!   with the key's name (exit code 2).
//! - [`client_address`]: the client's address, across trusted proxies
//!   only.
//! - [`context`]: request id (honoured when valid, generated otherwise,
//!   echoed, sent upstream) and W3C trace context, as the
//!   [`RequestContext`] extractor.
//! - [`rescue`]: every error response leaves as RFC 9457 problem+json with
//!   `requestId` and `traceId`, whatever produced it.
//! - [`etag`]: strong ETags and `304 Not Modified`.
//! - [`extract`]: query extraction whose rejection names the field.
//! - [`aggregate`]: the [`Aggregate`] extractor (deadlines, cache, route
//!   label, `Prefer: handling=strict`), its state taken by `FromRef`.
//! - [`admission`]: the adaptive limit on API requests in flight, by
//!   class, and fast refusals past it.
//! - the API stack (`src/api/`): one layer per concern of the
//!   authenticated routes — admission, the anonymous limit,
//!   authentication, the per-caller limit, cache headers.
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`server`]: bind, serve HTTP/1.1 and h2c, drain on SIGTERM.
//! - [`Shared`]: the pieces a BFF builds its state from;
//!   [`EdgeBuilder`]: the composition of its app.

#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod aggregate;
mod api;
mod app;
pub mod client_address;
pub mod config;
pub mod context;
pub mod etag;
pub mod extract;
pub mod health;
mod metrics_layer;
pub mod openapi;
pub mod ratelimit;
pub mod rescue;
pub mod server;
mod shared;
mod state;
pub mod versioning;

/// Feature flags ([`bff_flags`]): a BFF declares its [`flags::Flag`]s in
/// its [`BffSpec`] and asks [`Shared::flags`] for a subject's variant.
pub use bff_flags as flags;

pub use admission::AdmissionClass;
pub use aggregate::{Aggregate, AggregateState};
pub use app::EdgeBuilder;
pub use client_address::{ClientAddress, TrustedProxies};
pub use config::{Args, BffConfig, BffSpec, ConfigError};
pub use context::RequestContext;
pub use shared::{Shared, StartError};
pub use state::BffState;
