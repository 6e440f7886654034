//! The edge's own keys: where it listens, what it admits, how it ends.

use std::net::SocketAddr;
use std::time::Duration;

use bff_config::{FieldError, Section, de};
use reqwest::Url;

use crate::client_address::{ForwardedHeader, TrustedProxies};

/// API requests a BFF works on at once at most, per CPU it may use, unless
/// `BFF_MAX_IN_FLIGHT` says otherwise: the ceiling of the adaptive limit
/// ([`crate::admission`]), which is what bounds the work in practice. The
/// ceiling is a memory bound, set so that a CPU runs out before it does
/// for upstreams up to about 50 ms: a CPU serves 5,000–10,000 dashboards a
/// second (100–200 µs each), which against 50 ms upstreams is 250–500 in
/// flight (BENCHMARKS.md, seventh step: a ceiling of 64 held a replica to
/// 640 requests a second per CPU against 100 ms upstreams).
const MAX_IN_FLIGHT_PER_CPU: usize = 256;

/// How long an API request may wait for a place before it is refused,
/// unless `BFF_ADMISSION_QUEUE` says otherwise. Long enough to absorb the
/// bunching of arrivals at a limit that is not overloaded (a place frees
/// up every few hundred microseconds at a few thousand requests a second),
/// short enough that a refused client hears so within a few milliseconds
/// and tries another replica instead of waiting seconds for this one.
const ADMISSION_QUEUE: Duration = Duration::from_millis(2);

/// The longest `BFF_ADMISSION_QUEUE` may be: a queue is what the limit is
/// there to keep short.
const MAX_ADMISSION_QUEUE: Duration = Duration::from_secs(1);

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
    #[serde(deserialize_with = "de::on_off")]
    pub(super) adaptive_limit: bool,
    #[serde(deserialize_with = "de::duration_or_zero")]
    pub(super) admission_queue: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub(super) shutdown_grace: Duration,
    #[serde(deserialize_with = "send_buffer")]
    pub(super) send_buffer: Option<usize>,
    #[serde(deserialize_with = "trusted_proxies")]
    pub(super) trusted_proxies: TrustedProxies,
    #[serde(deserialize_with = "client_address_header")]
    pub(super) client_address_header: ForwardedHeader,
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
            adaptive_limit: true,
            admission_queue: ADMISSION_QUEUE,
            shutdown_grace: Duration::from_secs(10),
            send_buffer: None,
            trusted_proxies: TrustedProxies::default(),
            client_address_header: ForwardedHeader::default(),
        }
    }
}

impl Section for EdgeSection {
    /// The admission queue is short by design; the admin token guards cache
    /// purges: a short one is refused, and the message never repeats it.
    fn check(&self) -> Result<(), FieldError> {
        if self.admission_queue > MAX_ADMISSION_QUEUE {
            return Err(FieldError::new(
                "admission_queue",
                "must be at most 1s (0 refuses at once)",
            ));
        }
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

fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
    de::text(d, TrustedProxies::parse)
}

fn client_address_header<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<ForwardedHeader, D::Error> {
    de::text(d, str::parse)
}
