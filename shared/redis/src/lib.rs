//! Redis connections that fail fast.
//!
//! Redis is an optimisation for a BFF (a shared cache tier, fleet-wide rate
//! limits), never a dependency a request may wait on: every command is
//! bounded by `timeout`, a lost connection is retried once in the
//! background with at most a second between attempts, and the first
//! connection is made lazily, so a BFF starts while Redis is down. Every
//! user of Redis builds its connection here, so they fail alike.

use std::time::Duration;

pub use redis::aio::ConnectionManager;

/// A client for `url` (for pub/sub, which needs a connection of its own)
/// and a shared, self-healing connection whose connect and response times
/// are bounded by `timeout`.
///
/// # Errors
/// When `url` is not a Redis URL.
pub fn connect(
    url: &str,
    timeout: Duration,
) -> redis::RedisResult<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
    Ok((client, conn))
}
