//! What every BFF of a process shares: the pieces its app is composed from
//! (by [`crate::EdgeBuilder`]) and its handlers' state is built from.

use std::sync::Arc;
use std::time::Duration;

use bff_auth::{AuthConfig, Authenticator, IssuerConfig};
use bff_cache::tiered::{FragmentStore, TieredCache, TieredConfig, TieredError};
use bff_ratelimit::{LimiterConfig, LimiterError, RateLimiter};
use bff_upstream::{Registry, RegistryError};

use crate::aggregate::AggregateState;
use crate::config::BffConfig;

/// Why a BFF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An upstream (or the HTTP pool) cannot be built, or is not declared.
    #[error(transparent)]
    Upstream(#[from] RegistryError),
    /// The cache cannot be built (an unusable `REDIS_URL`).
    #[error(transparent)]
    Cache(#[from] TieredError),
    /// The rate limiter cannot be built (an unusable `REDIS_URL`).
    #[error(transparent)]
    RateLimit(#[from] LimiterError),
    /// The flags cannot be read from Redis (an unusable `REDIS_URL`).
    #[error(transparent)]
    Flags(#[from] bff_flags::FlagsError),
    /// A BFF's own part cannot be built.
    #[error("{part}: {message}")]
    Part {
        /// Which part.
        part: &'static str,
        /// Why.
        message: String,
    },
}

struct Inner {
    config: BffConfig,
    auth: Arc<Authenticator>,
    cache: FragmentStore,
    registry: Registry,
    limiter: Option<RateLimiter>,
    streams: bff_live::Streams,
    flags: bff_flags::Flags,
}

/// The process-wide pieces of a BFF: configuration, the authenticator, the
/// fragment cache and the registry of the upstreams it declared.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the shared pieces and starts the JWKS refresh. Must run inside
    /// a Tokio runtime.
    pub fn new(config: BffConfig) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        if config.redis_url.is_some() {
            tracing::info!(
                "REDIS_URL is set: fragments are shared with the other replicas (rate limits stay in process in this build)"
            );
        }
        // Install the metrics recorder before anything records.
        bff_telemetry::prometheus();
        let registry = Registry::build(&config.upstreams, config.connect_timeout)?;
        let http = registry.http().clone();
        let mut issuers = vec![IssuerConfig::new(
            "default",
            config.jwks_url.as_str(),
            config.issuer.clone(),
            config.audience.clone(),
        )];
        issuers.extend(config.extra_issuers.iter().cloned());
        let mut auth_config = AuthConfig::with_issuers(issuers);
        auth_config.refresh_every = config.jwks_refresh;
        auth_config.min_refetch = config.jwks_min_refetch;
        auth_config.remembered_bytes = config.auth_cache_bytes;
        let auth = Authenticator::start(auth_config, http.clone());
        let cache = FragmentStore::new(TieredCache::new(TieredConfig {
            local_max_bytes: config.cache_max_bytes,
            local_keep_for: config
                .fragments
                .iter()
                .map(|p| p.keep_for())
                .fold(config.cache_stale_for, Duration::max),
            redis_url: config.redis_url.clone(),
            redis_timeout: config.redis_timeout,
            // Every BFF kind on one Redis keeps to its own entries.
            namespace: config.name.to_owned(),
            fragments: config.fragments.clone(),
            lock_for: config.cache_lock_for,
        })?);
        let limiter = if config.rate_limits.is_empty() {
            None
        } else {
            Some(RateLimiter::new(LimiterConfig {
                policies: config.rate_limits.clone(),
                redis_url: config.redis_url.clone(),
                redis_timeout: config.redis_timeout,
                namespace: config.name.to_owned(),
            })?)
        };
        let streams = bff_live::Streams::new(config.live);
        let flags = bff_flags::Flags::start(
            config.name,
            &config.flags,
            config
                .redis_url
                .as_ref()
                .map(|url| bff_flags::SharedStore {
                    url: url.clone(),
                    // A refresh is off the request path: it may wait for a
                    // slow Redis longer than a request's cache lookup.
                    timeout: config.redis_timeout.max(Duration::from_millis(500)),
                    // Every BFF kind on one Redis has flags of its own.
                    namespace: config.name.to_owned(),
                })
                .as_ref(),
        )?;
        Ok(Shared {
            inner: Arc::new(Inner {
                config,
                auth,
                cache,
                registry,
                limiter,
                streams,
                flags,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BffConfig {
        &self.inner.config
    }

    /// The token verifier.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.inner.auth
    }

    /// The fragment cache.
    pub fn fragments(&self) -> &FragmentStore {
        &self.inner.cache
    }

    /// What the [`crate::Aggregate`] extractor takes from a router's state:
    /// the fragment cache and the configured deadlines.
    pub fn aggregate_state(&self) -> AggregateState {
        AggregateState::new(self.inner.cache.clone(), self.inner.config.deadlines)
    }

    /// The upstreams this BFF declared, to build its clients from.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The process's live streams: their limits, and their drain on
    /// shutdown.
    pub fn streams(&self) -> &bff_live::Streams {
        &self.inner.streams
    }

    /// The BFF's feature flags ([`bff_flags`]): which variant a subject
    /// gets, the same on every replica.
    pub fn flags(&self) -> &bff_flags::Flags {
        &self.inner.flags
    }

    /// The rate limiter; `None` when `BFF_RATE_LIMITS=off`.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_ref()
    }
}
