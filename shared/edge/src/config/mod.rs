//! Typed configuration of a BFF binary.
//!
//! Sources, later winning: built-in defaults, an optional TOML file
//! (`--config FILE`), the environment. The file may use the environment's
//! names (`BFF_LISTEN = "…"`) or lower-case ones without the prefix, nested
//! or not (`listen`, `[upstream.user] timeout = "300ms"` is
//! `BFF_UPSTREAM_USER_TIMEOUT`). Every value is parsed and checked once, here;
//! a bad one is a [`ConfigError`] naming the key. An unknown key in the file
//! is an error (a typo must not be ignored); an unknown `BFF_*` variable in
//! the environment is only a warning, since orchestrators inject variables
//! of their own.
//!
//! Environment variables are read through the `env` argument, never with
//! `std::env::var` in code paths, so tests pass their own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bff_cache::tiered::FragmentPolicy;
use bff_ratelimit::{Policy, Quota};
use bff_telemetry::LogFormat;
use bff_upstream::{UpstreamDecl, UpstreamPolicy, UpstreamSettings};
use reqwest::Url;

mod issuers;
mod source;

use issuers::{issuers, unknown_fragment_kinds};
use source::Source;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, as the environment spells it (or the file path).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// What distinguishes one BFF binary from another at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BffSpec {
    /// Binary name, default audience and service name (`bff-mobile`).
    pub name: &'static str,
    /// The BFF's own version (its crate's: each team releases its BFF on
    /// its own schedule), for `--version`, telemetry and the OpenAPI
    /// document.
    pub version: &'static str,
    /// Default port (8081, 8082, 8083).
    pub default_port: u16,
    /// The upstreams this BFF calls: only these are configured, built and
    /// listed in `/readyz`.
    pub upstreams: &'static [UpstreamDecl],
    /// The kinds of fragment this BFF caches, with their default policies.
    pub fragments: &'static [FragmentPolicy],
}

/// Variables read under their standard names rather than `BFF_*`.
const PASSTHROUGH: [&str; 2] = ["REDIS_URL", "RUST_LOG"];

/// Whether the environment variable `key` is configuration: `BFF_*`, the
/// pass-through names, and the `OTEL_*` variables (from the environment
/// only, as the OpenTelemetry SDK reads them there too).
fn is_config_env(key: &str) -> bool {
    key.starts_with("BFF_")
        || PASSTHROUGH.contains(&key)
        || bff_telemetry::OTEL_VARIABLES.contains(&key)
}

pub use bff_aggregate::Deadlines;

/// Everything a BFF binary is configured with.
#[derive(Debug, Clone)]
pub struct BffConfig {
    /// The BFF's version (from its spec).
    pub version: &'static str,
    /// Binary name.
    pub name: &'static str,
    /// Listen address.
    pub listen: SocketAddr,
    /// JWKS location.
    pub jwks_url: Url,
    /// Required `iss`.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Background JWKS refresh period.
    pub jwks_refresh: Duration,
    /// Shortest interval between JWKS refetches for unknown key ids.
    pub jwks_min_refetch: Duration,
    /// Every declared upstream with its URL and call policy.
    pub upstreams: Vec<UpstreamSettings>,
    /// Connect timeout of the shared HTTP pool and the gRPC channels.
    pub connect_timeout: Duration,
    /// Section deadlines.
    pub deadlines: Deadlines,
    /// The least time the in-process tier keeps any fragment
    /// (`BFF_CACHE_STALE_FOR`); each declared kind keeps its own windows.
    pub cache_stale_for: Duration,
    /// Bytes the in-process cache tier may hold.
    pub cache_max_bytes: u64,
    /// The policy of each declared kind of fragment.
    pub fragments: Vec<FragmentPolicy>,
    /// How long a replica loading a fragment holds its Redis lock (the
    /// others wait for its copy up to this long).
    pub cache_lock_for: Duration,
    /// Longest any Redis call may take.
    pub redis_timeout: Duration,
    /// `BFF_ADMIN_TOKEN`: the bearer secret of the admin routes (cache
    /// purge); unset, they do not exist.
    pub admin_token: Option<String>,
    /// Browser origins allowed by CORS (`BFF_CORS_ORIGINS`, comma
    /// separated); empty: no CORS.
    pub cors_origins: Vec<http::HeaderValue>,
    /// The rate-limit policies, by tier and `anonymous`
    /// (`BFF_RATE_LIMIT_{TIER}`); empty when `BFF_RATE_LIMITS=off`.
    pub rate_limits: Vec<Policy>,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// `BFF_MAX_IN_FLIGHT`: the most API requests worked on at once; more
    /// wait, in arrival order, until one ends (`None`: `off`, no bound).
    /// Below it, the bound in use follows the load ([`crate::in_flight`]).
    /// Probes, metrics and the OpenAPI document are never held.
    pub max_in_flight: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// `RUST_LOG` filter.
    pub log_filter: String,
    /// `REDIS_URL`: the shared cache tier and its invalidation channel.
    pub redis_url: Option<String>,
    /// OTLP export (the standard `OTEL_*` variables); nothing without an endpoint.
    pub telemetry: bff_telemetry::ExportConfig,
    /// Issuers trusted besides the default one (`BFF_ISSUERS`,
    /// `BFF_ISSUER_{NAME}_*`).
    pub extra_issuers: Vec<bff_auth::IssuerConfig>,
    /// Bytes the memory of verified tokens may hold (`BFF_AUTH_CACHE_BYTES`).
    pub auth_cache_bytes: u64,
    /// Live-update streams (`BFF_LIVE_*`).
    pub live: bff_live::LiveConfig,
    /// The kernel send buffer of each connection, in bytes
    /// (`BFF_SEND_BUFFER`); `None`: the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// Things worth a warning once logging is up (unknown variables, …).
    pub warnings: Vec<String>,
}

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

fn default_max_in_flight() -> Option<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(MAX_IN_FLIGHT_PER_CPU * cpus)
}

/// `BFF_MAX_IN_FLIGHT`: `off`, or a bound from 1 to 1,000,000.
fn parse_max_in_flight(raw: &str) -> Result<Option<usize>, String> {
    match raw {
        "off" => Ok(None),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
            _ => Err("expected off or a whole number from 1 to 1000000".to_owned()),
        },
    }
}

/// Each policy's default quota: requests per window (seconds). Absent tier
/// in a token means `standard` (the contract).
const DEFAULT_RATE_LIMITS: [(&str, u32, u64); 4] = [
    ("free", 60, 60),
    ("standard", 300, 60),
    ("premium", 600, 60),
    ("anonymous", 20, 60),
];

impl BffConfig {
    /// The built-in defaults (what an empty environment gives).
    pub fn defaults(spec: BffSpec) -> Self {
        match Self::load(spec, None, std::iter::empty()) {
            Ok(config) => config,
            // The defaults are constants checked by a test; this cannot fail.
            Err(error) => unreachable!("built-in defaults are invalid: {error}"),
        }
    }

    /// Loads from `file` (if any) and `env`, checking every value.
    pub fn load(
        spec: BffSpec,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut s = Source::load(file, env)?;
        let listen = s.parse(
            "BFF_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], spec.default_port)),
            |raw| {
                raw.parse().map_err(|_| {
                    "expected an address such as 127.0.0.1:8081 or 0.0.0.0:8081".to_owned()
                })
            },
        )?;
        let jwks_url = s.url(
            "BFF_JWKS_URL",
            "http://127.0.0.1:7000/.well-known/jwks.json",
        )?;
        let issuer = s
            .take("BFF_ISSUER")
            .unwrap_or_else(|| "http://127.0.0.1:7000".to_owned());
        let audience = s
            .take("BFF_AUDIENCE")
            .unwrap_or_else(|| spec.name.to_owned());
        let jwks_refresh = s.duration("BFF_JWKS_REFRESH", Duration::from_secs(300))?;
        let jwks_min_refetch = s.duration("BFF_JWKS_MIN_REFETCH", Duration::from_secs(10))?;
        let extra_issuers = issuers(&mut s, &issuer, &audience)?;
        let auth_cache_bytes = s.positive("BFF_AUTH_CACHE_BYTES", 16 * 1024 * 1024)?;

        let all = s.policy("BFF_UPSTREAM_ALL", UpstreamPolicy::default())?;
        let mut upstreams = Vec::with_capacity(spec.upstreams.len());
        for decl in spec.upstreams {
            let key = format!("BFF_UPSTREAM_{}", decl.name.to_uppercase());
            upstreams.push(UpstreamSettings {
                decl: *decl,
                url: s.url(&key, decl.default_url)?,
                policy: s.policy(&key, all)?,
            });
        }
        let deadlines = Deadlines {
            request: s.duration("BFF_DEADLINE_REQUEST", Duration::from_millis(2500))?,
            critical: s.duration("BFF_DEADLINE_CRITICAL", Duration::from_millis(500))?,
            optional: s.duration("BFF_DEADLINE_OPTIONAL", Duration::from_secs(2))?,
        };
        if deadlines.critical > deadlines.request || deadlines.optional > deadlines.request {
            return Err(ConfigError::new(
                "BFF_DEADLINE_REQUEST",
                format!(
                    "must be at least the section deadlines ({:?}, {:?})",
                    deadlines.critical, deadlines.optional
                ),
            ));
        }
        let cache_stale_for = s.duration("BFF_CACHE_STALE_FOR", Duration::from_secs(600))?;
        let mut fragments = Vec::with_capacity(spec.fragments.len());
        for default in spec.fragments {
            let key = |suffix: &str| format!("BFF_CACHE_{}_{suffix}", default.kind.to_uppercase());
            fragments.push(FragmentPolicy {
                fresh_for: s.duration_or_zero(&key("FRESH"), default.fresh_for)?,
                revalidate_for: s.duration_or_zero(&key("REVALIDATE"), default.revalidate_for)?,
                stale_for: s.duration_or_zero(&key("STALE"), default.stale_for)?,
                ..*default
            });
        }
        unknown_fragment_kinds(&s, spec)?;
        let admin_token = match s.take("BFF_ADMIN_TOKEN") {
            Some(token) if token.len() < 32 || token.chars().any(|c| !c.is_ascii_graphic()) => {
                return Err(ConfigError::new(
                    "BFF_ADMIN_TOKEN",
                    "must be at least 32 printable characters without spaces (it guards cache purges)",
                ));
            }
            token => token,
        };
        let cors_origins = s.parse("BFF_CORS_ORIGINS", Vec::new(), |raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|origin| {
                    let url = Url::parse(origin)
                        .map_err(|_| format!("{origin:?} is not an origin such as https://app.example.com"))?;
                    let bare = url.path() == "/" && url.query().is_none() && !origin.ends_with('/');
                    if !matches!(url.scheme(), "http" | "https") || !bare || url.host().is_none() {
                        return Err(format!("{origin:?} is not an origin such as https://app.example.com (scheme, host and port only)"));
                    }
                    http::HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a valid header value"))
                })
                .collect()
        })?;
        let mut rate_limits = Vec::with_capacity(DEFAULT_RATE_LIMITS.len());
        for (name, limit, window_secs) in DEFAULT_RATE_LIMITS {
            let key = format!("BFF_RATE_LIMIT_{}", name.to_uppercase());
            let default = Quota {
                limit,
                window: Duration::from_secs(window_secs),
            };
            rate_limits.push(Policy {
                name,
                quota: s.parse(&key, default, Quota::parse)?,
            });
        }
        let limits_on = s.parse("BFF_RATE_LIMITS", true, |raw| match raw {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err("expected on or off".to_owned()),
        })?;
        if !limits_on {
            rate_limits.clear();
        }
        let log_format = match s.take("BFF_LOG_FORMAT") {
            None => LogFormat::detect(),
            Some(raw) => LogFormat::parse(raw.trim()).ok_or_else(|| {
                ConfigError::new(
                    "BFF_LOG_FORMAT",
                    format!("expected json or pretty (got {raw:?})"),
                )
            })?,
        };
        let otel: Vec<(&str, String)> = bff_telemetry::OTEL_VARIABLES
            .iter()
            .filter_map(|key| s.take(key).map(|value| (*key, value)))
            .collect();
        let telemetry = bff_telemetry::ExportConfig::from_env(|key| {
            otel.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        })
        .map_err(|e| ConfigError::new(e.key, e.message))?;
        let send_buffer = match s.take("BFF_SEND_BUFFER") {
            None => None,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if (4096..=64 * 1024 * 1024).contains(&n) => Some(n),
                _ => {
                    return Err(ConfigError::new(
                        "BFF_SEND_BUFFER",
                        format!("expected a number of bytes from 4096 to 67108864 (got {raw:?})"),
                    ));
                }
            },
        };
        let live_default = bff_live::LiveConfig::default();
        let live = bff_live::LiveConfig {
            heartbeat: s.duration("BFF_LIVE_HEARTBEAT", live_default.heartbeat)?,
            idle_timeout: s.duration("BFF_LIVE_IDLE_TIMEOUT", live_default.idle_timeout)?,
            max_lifetime: s.duration("BFF_LIVE_MAX_LIFETIME", live_default.max_lifetime)?,
            max_per_subject: s.count("BFF_LIVE_MAX_PER_SUBJECT", live_default.max_per_subject)?,
            max_streams: s.count("BFF_LIVE_MAX_STREAMS", live_default.max_streams)?,
            buffer: s.count("BFF_LIVE_BUFFER", live_default.buffer)?,
            replay: s.count("BFF_LIVE_REPLAY", live_default.replay)?,
            linger: s.duration_or_zero("BFF_LIVE_LINGER", live_default.linger)?,
            write_timeout: s.duration("BFF_LIVE_WRITE_TIMEOUT", live_default.write_timeout)?,
        };
        let config = BffConfig {
            version: spec.version,
            name: spec.name,
            listen,
            jwks_url,
            issuer,
            audience,
            jwks_refresh,
            jwks_min_refetch,
            upstreams,
            connect_timeout: s.duration("BFF_CONNECT_TIMEOUT", Duration::from_millis(500))?,
            deadlines,
            cache_stale_for,
            cache_max_bytes: s.positive("BFF_CACHE_MAX_BYTES", 64 * 1024 * 1024)?,
            fragments,
            cache_lock_for: s.duration("BFF_CACHE_LOCK_FOR", Duration::from_millis(200))?,
            redis_timeout: s.duration("BFF_REDIS_TIMEOUT", Duration::from_millis(50))?,
            admin_token,
            cors_origins,
            rate_limits,
            body_limit: s.positive("BFF_BODY_LIMIT", 64 * 1024)? as usize,
            max_in_flight: s.parse(
                "BFF_MAX_IN_FLIGHT",
                default_max_in_flight(),
                parse_max_in_flight,
            )?,
            shutdown_grace: s.duration("BFF_SHUTDOWN_GRACE", Duration::from_secs(10))?,
            log_format,
            log_filter: s.take("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            redis_url: s.take("REDIS_URL"),
            telemetry,
            extra_issuers,
            auth_cache_bytes,
            live,
            send_buffer,
            warnings: Vec::new(),
        };
        let (file_unknown, env_unknown) = s.leftovers();
        if let Some(key) = file_unknown.first() {
            return Err(ConfigError::new(
                key,
                "unknown key in the configuration file",
            ));
        }
        Ok(BffConfig {
            warnings: env_unknown
                .into_iter()
                .map(|k| format!("unknown variable {k} ignored"))
                .collect(),
            ..config
        })
    }

    /// The settings of declared upstream `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamSettings> {
        self.upstreams.iter().find(|u| u.decl.name == name)
    }
}

/// Reads `--config FILE` from the command line; anything else is an error
/// (`--help` and `--version` are answered by the caller).
pub fn config_path_from_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let mut args = args.into_iter();
    let mut path = None;
    while let Some(arg) = args.next() {
        if arg == "--config" {
            let value = args
                .next()
                .ok_or_else(|| ConfigError::new("--config", "expects a file path"))?;
            path = Some(value.into());
        } else if let Some(value) = arg.strip_prefix("--config=") {
            path = Some(value.into());
        } else {
            return Err(ConfigError::new(
                &arg,
                "unknown argument (usage: [--config FILE])",
            ));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
