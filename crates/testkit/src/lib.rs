//! Helpers shared by the tests of every crate: the demo services on free
//! ports, a test JWKS with a token minter (for good and deliberately bad
//! tokens), and a real `redis-server` started on a free port.
//!
//! Everything talks over real sockets; nothing here fakes a shared crate.

mod bff;
mod binary;
pub mod live;
mod openapi;
pub mod otlp;
mod redis_server;
mod tokens;

pub use bff::{
    EDGE_SPEC, TestServer, bff_config, bff_config_with, clear_fault, partner_token, serve_bff,
    serve_edge, serve_edge_composed, serve_edge_with, set_fault, stand_in_only, start_bff,
    start_stand_in_only, upstreams_of, user_token,
};

pub use binary::{BffProcess, check_cache_series_at_start, check_sigterm_drains};
pub use openapi::check_openapi;
pub use redis_server::RedisServer;
pub use tokens::{JwksServer, TEST_ISSUER, TestClaims};

use demo_services::{DemoConfig, DemoStack};

/// Starts every demo service and the control API on free ports.
///
/// # Panics
/// When the services cannot start: a test cannot go on without them.
pub async fn start_demo() -> DemoStack {
    start_demo_with(DemoConfig::ephemeral()).await
}

/// Starts the demo world with a custom configuration (ports are still best
/// left at 0).
///
/// # Panics
/// When the services cannot start.
pub async fn start_demo_with(config: DemoConfig) -> DemoStack {
    match DemoStack::start(config).await {
        Ok(stack) => stack,
        Err(error) => panic!("the demo services did not start: {error}"),
    }
}
