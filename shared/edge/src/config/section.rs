//! The edge's own keys: where it listens, what it admits, how it ends.

use std::net::SocketAddr;
use std::time::Duration;

use bff_config::{FieldError, Section, de};
use reqwest::Url;

/// API requests a BFF works on at once, per CPU it may use, unless
/// `BFF_MAX_IN_FLIGHT` says otherwise. Past its CPU, a BFF that starts every
/// request it reads only makes each one slower: more upstream connections
/// opened, more memory touched, every request's turn further away, until
/// the bulkheads shed. Measured (BENCHMARKS.md, scenario 10 at 3,000/s on
/// one CPU): without a bound, a short hiccup grew into seconds of 200–300 ms
/// answers and hundreds of partial dashboards; with 64, the requests past
/// it wait a moment, p99 stays in tens of milliseconds and none is partial.
/// It is a ceiling: the bound in use is sized to the load below it
/// ([`crate::in_flight`]), so the ceiling only matters against slow
/// upstreams, where rate × upstream latency is the least a BFF needs. It is
/// set so that a CPU runs out before the ceiling does for upstreams up to
/// about 50 ms: a CPU serves 5,000–10,000 dashboards a second (100–200 µs
/// each), which against 50 ms upstreams is 250–500 in flight. The former
/// 64 held a replica to 640 requests a second per CPU against 100 ms
/// upstreams (BENCHMARKS.md, seventh step: offered 1,000/s, it served 610/s
/// at a p99 of 1.7 s; with 256, all of them, within 1.1 ms of the upstreams).
const MAX_IN_FLIGHT_PER_CPU: usize = 256;

/// The keys without a prefix that the edge reads (`BFF_LISTEN`, …).
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct EdgeSection {
    /// `None`: 127.0.0.1 on the BFF's default port.
    #[serde(deserialize_with = "listen")]
    pub(super) listen: Option<SocketAddr>,
    #[serde(deserialize_with = "de::some_text")]
    pub(super) admin_token: Option<String>,
    #[serde(deserialize_with = "cors_origins")]
    pub(super) cors_origins: Vec<http::HeaderValue>,
    #[serde(deserialize_with = "de::positive")]
    pub(super) body_limit: usize,
    #[serde(deserialize_with = "max_in_flight")]
    pub(super) max_in_flight: Option<usize>,
    #[serde(deserialize_with = "de::duration")]
    pub(super) shutdown_grace: Duration,
    #[serde(deserialize_with = "send_buffer")]
    pub(super) send_buffer: Option<usize>,
}

impl Default for EdgeSection {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        EdgeSection {
            listen: None,
            admin_token: None,
            cors_origins: Vec::new(),
            body_limit: 64 * 1024,
            max_in_flight: Some(MAX_IN_FLIGHT_PER_CPU * cpus),
            shutdown_grace: Duration::from_secs(10),
            send_buffer: None,
        }
    }
}

impl Section for EdgeSection {
    /// The admin token guards cache purges: a short one is refused, and
    /// the message never repeats it.
    fn check(&self) -> Result<(), FieldError> {
        match &self.admin_token {
            Some(token) if token.len() < 32 || token.chars().any(|c| !c.is_ascii_graphic()) => {
                Err(FieldError::new(
                    "admin_token",
                    "must be at least 32 printable characters without spaces (it guards cache purges)",
                ))
            }
            _ => Ok(()),
        }
    }
}

fn listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    de::text(d, |raw| {
        raw.parse()
            .map(Some)
            .map_err(|_| "expected an address such as 127.0.0.1:8081 or 0.0.0.0:8081".to_owned())
    })
}

/// `off`, or a bound from 1 to 1,000,000.
fn max_in_flight<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    de::text(d, |raw| match raw {
        "off" => Ok(None),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
            _ => Err("expected off or a whole number from 1 to 1000000".to_owned()),
        },
    })
}

fn send_buffer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    de::text(d, |raw| match raw.parse::<usize>() {
        Ok(n) if (4096..=64 * 1024 * 1024).contains(&n) => Ok(Some(n)),
        _ => Err("expected a number of bytes from 4096 to 67108864".to_owned()),
    })
}

/// Comma-separated browser origins: scheme, host and port only.
fn cors_origins<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<http::HeaderValue>, D::Error> {
    de::text(d, |raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|origin| {
                let url = Url::parse(origin).map_err(|_| {
                    format!("{origin:?} is not an origin such as https://app.example.com")
                })?;
                let bare = url.path() == "/" && url.query().is_none() && !origin.ends_with('/');
                if !matches!(url.scheme(), "http" | "https") || !bare || url.host().is_none() {
                    return Err(format!(
                        "{origin:?} is not an origin such as https://app.example.com (scheme, host and port only)"
                    ));
                }
                http::HeaderValue::from_str(origin)
                    .map_err(|_| format!("{origin:?} is not a valid header value"))
            })
            .collect()
    })
}
