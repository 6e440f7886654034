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
use std::path::{Path, PathBuf};
use std::time::Duration;

use bff_auth::AuthSettings;
use bff_cache::CacheConfig;
use bff_cache::tiered::FragmentPolicy;
use bff_config::Sources;
use bff_ratelimit::Policy;
use bff_telemetry::{LogFormat, TelemetrySettings};
use bff_upstream::{UpstreamDecl, UpstreamSettings, UpstreamsConfig};
use reqwest::Url;

mod section;

use crate::client_address::TrustedProxies;

use section::EdgeSection;

pub use bff_config::ConfigError;

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
    /// The feature flags this BFF reads, with the splits it ships
    /// ([`bff_flags`]).
    pub flags: &'static [bff_flags::Flag],
}

/// Variables read under their standard names rather than `BFF_*`.
const PASSTHROUGH: [&str; 2] = ["REDIS_URL", "RUST_LOG"];

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
    /// `BFF_MAX_IN_FLIGHT`: the most API requests worked on at once
    /// (`None`: `off`, no limit). Below it the limit in use adapts to the
    /// requests' latency unless `adaptive_limit` is off
    /// ([`crate::admission`]). Probes, metrics and the OpenAPI document are
    /// never held.
    pub max_in_flight: Option<usize>,
    /// `BFF_ADAPTIVE_LIMIT`: whether the limit adapts to latency (`on`) or
    /// is `max_in_flight` itself (`off`).
    pub adaptive_limit: bool,
    /// `BFF_ADMISSION_QUEUE`: how long a request may wait for a place
    /// before it is refused with 503 (0: refused at once).
    pub admission_queue: Duration,
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
    /// `BFF_TRUSTED_PROXIES` and `BFF_CLIENT_ADDRESS_HEADER`: the proxies
    /// whose word on the client's address is taken, and the header they
    /// write it in ([`crate::client_address`]).
    pub trusted_proxies: TrustedProxies,
    /// The flags the BFF declared and their splits from the file and the
    /// environment (`BFF_FLAG_{KEY}`, `BFF_FLAGS_FILE`, `BFF_FLAGS_REFRESH`).
    pub flags: bff_flags::FlagsConfig,
    /// Things worth a warning once logging is up (unknown variables, …).
    pub warnings: Vec<String>,
}

impl BffConfig {
    /// The built-in defaults (what an empty environment gives).
    pub fn defaults(spec: BffSpec) -> Self {
        match Self::load(spec, None, std::iter::empty()) {
            Ok(config) => config,
            // The defaults are constants checked by a test; this cannot fail.
            Err(error) => unreachable!("built-in defaults are invalid: {error}"),
        }
    }

    /// Loads from `file` (if any) and `env`, checking every value: each
    /// crate reads its own section, this only assembles them.
    pub fn load(
        spec: BffSpec,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut s = Sources::load(file, env, &PASSTHROUGH, bff_telemetry::OTEL_VARIABLES)?;
        let edge: EdgeSection = s.section("")?;
        let auth = AuthSettings::configure(&mut s, spec.name)?;
        let upstreams = UpstreamsConfig::configure(&mut s, spec.upstreams)?;
        let deadlines: Deadlines = s.section("DEADLINE")?;
        let cache = CacheConfig::configure(&mut s, spec.name, spec.fragments)?;
        let rate_limits = bff_ratelimit::configured_policies(&mut s)?;
        let telemetry = TelemetrySettings::configure(&mut s)?;
        let live: bff_live::LiveConfig = s.section("LIVE")?;
        let flags = bff_flags::FlagsConfig::configure(&mut s, spec.flags)?;
        let redis_url = s.take("REDIS_URL");
        let warnings = s.finish()?;
        Ok(BffConfig {
            version: spec.version,
            name: spec.name,
            listen: edge
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], spec.default_port))),
            jwks_url: auth.jwks_url,
            issuer: auth.issuer,
            audience: auth.audience,
            jwks_refresh: auth.jwks_refresh,
            jwks_min_refetch: auth.jwks_min_refetch,
            upstreams: upstreams.upstreams,
            connect_timeout: upstreams.connect_timeout,
            deadlines,
            cache_stale_for: cache.stale_for,
            cache_max_bytes: cache.max_bytes,
            fragments: cache.fragments,
            cache_lock_for: cache.lock_for,
            redis_timeout: cache.redis_timeout,
            admin_token: edge.admin_token,
            cors_origins: edge.cors_origins,
            rate_limits,
            body_limit: edge.body_limit,
            max_in_flight: edge.max_in_flight,
            adaptive_limit: edge.adaptive_limit,
            admission_queue: edge.admission_queue,
            shutdown_grace: edge.shutdown_grace,
            log_format: telemetry.log_format,
            log_filter: telemetry.log_filter,
            redis_url,
            telemetry: telemetry.export,
            extra_issuers: auth.extra_issuers,
            auth_cache_bytes: auth.cache_bytes,
            live,
            send_buffer: edge.send_buffer,
            trusted_proxies: edge.trusted_proxies.in_header(edge.client_address_header),
            flags,
            warnings,
        })
    }

    /// The settings of declared upstream `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamSettings> {
        self.upstreams.iter().find(|u| u.decl.name == name)
    }
}

/// The command line of a BFF binary (`--help` and `--version` are
/// answered by [`Args::parse`]'s caller from the error it returns).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
pub struct Args {
    /// A TOML file of settings; the environment wins over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Asks the BFF configured so for /readyz and exits 0 when it is ready
    /// (a container HEALTHCHECK).
    #[arg(long)]
    pub health_check: bool,
}

impl Args {
    /// Parses `args` (without the program name) for the BFF `spec`. A
    /// request for help or the version is an error too, one that
    /// [`clap::Error::use_stderr`] says is not a failure.
    pub fn parse(
        spec: BffSpec,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let command = Args::command()
            .name(spec.name)
            .version(spec.version)
            .about(
                "Configuration comes from the environment (BFF_LISTEN, BFF_JWKS_URL, …; see the README), optionally from a TOML file; the environment wins.",
            );
        let matches =
            command.try_get_matches_from(std::iter::once(spec.name.to_owned()).chain(args))?;
        Args::from_arg_matches(&matches)
    }
}

#[cfg(test)]
mod tests;
