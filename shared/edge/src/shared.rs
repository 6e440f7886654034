//! What every BFF of a process shares, and the composition of its app.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use bff_auth::{AuthConfig, Authenticator, IssuerConfig};
use bff_cache::tiered::{FragmentStore, TieredCache, TieredConfig, TieredError};
use bff_problem::ApiError;
use bff_ratelimit::{Decision, LimiterConfig, LimiterError, RateLimiter};
use bff_upstream::{Registry, RegistryError};
use http::{HeaderValue, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::BffConfig;
use crate::context::RequestContextLayer;
use crate::etag::PerEncodingLayer;
use crate::metrics_layer::MetricsLayer;
use crate::{health, ratelimit};

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
    blocked: crate::ratelimit::Blocked,
    streams: bff_live::Streams,
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
        Ok(Shared {
            inner: Arc::new(Inner {
                config,
                auth,
                cache,
                registry,
                limiter,
                blocked: ratelimit::Blocked::new(),
                streams,
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

    /// The upstreams this BFF declared, to build its clients from.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The process's live streams: their limits, and their drain on
    /// shutdown.
    pub fn streams(&self) -> &bff_live::Streams {
        &self.inner.streams
    }

    /// The rate limiter; `None` when `BFF_RATE_LIMITS=off`.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_ref()
    }

    pub(crate) fn blocked(&self, ip: std::net::IpAddr) -> Option<Decision> {
        self.inner.blocked.get(ip)
    }

    pub(crate) fn block(&self, ip: std::net::IpAddr, decision: &Decision) {
        self.inner.blocked.insert(ip, decision);
    }
}

/// Composes a BFF's app: its authenticated API routes, the health routes,
/// and the edge layers every BFF has, in the same order everywhere.
#[derive(Debug)]
pub struct EdgeBuilder {
    shared: Shared,
    api: Router,
    /// The bound on API requests in flight (`BffConfig::max_in_flight`),
    /// one for every authenticated route; probes and metrics are outside.
    in_flight: Option<Arc<crate::in_flight::InFlight>>,
    document: Option<serde_json::Value>,
}

impl EdgeBuilder {
    /// A builder over `shared`.
    pub fn new(shared: Shared) -> Self {
        let in_flight = shared
            .config()
            .max_in_flight
            .map(crate::in_flight::InFlight::new);
        EdgeBuilder {
            shared,
            api: Router::new(),
            in_flight,
            document: None,
        }
    }

    /// Adds routes that require a verified bearer token, rate-limited per
    /// caller (and, for failed authentications, per client address), within
    /// the bound on API requests in flight.
    pub fn authenticated(mut self, routes: Router) -> Self {
        let layer = crate::aggregate::ApiLayer::new(self.shared.clone(), self.in_flight.clone());
        self.api = self.api.merge(routes.route_layer(layer));
        self
    }

    /// Serves the OpenAPI document of the routes (`GET /openapi.json`), with
    /// what every route shares added ([`crate::openapi::document`]).
    pub fn openapi(mut self, doc: utoipa::openapi::OpenApi, description: &str) -> Self {
        self.document = Some(crate::openapi::document(
            doc,
            self.shared.config().name,
            self.shared.config().version,
            description,
        ));
        self
    }

    /// The finished app. Layers, from the outside in: request context and
    /// problem rescue, metrics, compression (br preferred, gzip), body limit.
    pub fn build(self) -> Router {
        let body_limit = self.shared.config().body_limit;
        let name = self.shared.config().name;
        let admin = crate::admin::router(&self.shared).unwrap_or_default();
        let document = self
            .document
            .as_ref()
            .map(crate::openapi::router)
            .unwrap_or_default();
        let cors = cors(&self.shared.config().cors_origins);
        // One layer on the routes, not one per middleware: axum wraps a
        // route in a boxed service per `layer` call, and each of those is
        // cloned and boxed again on every request.
        let edge = tower::ServiceBuilder::new()
            .layer(RequestContextLayer::new(name))
            .layer(MetricsLayer)
            .layer(PerEncodingLayer)
            .layer(CompressionLayer::new().br(true).gzip(true))
            .layer(RequestBodyLimitLayer::new(body_limit))
            .option_layer(cors)
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(CatchPanicLayer::custom(panicked as fn(_) -> Response));
        Router::new()
            .merge(self.api)
            .merge(admin)
            .merge(document)
            .merge(health::router(self.shared))
            .fallback(|| async { ApiError::not_found("no such resource") })
            .layer(edge)
    }
}

/// A handler (or middleware) panicked: the request gets a 500 problem+json
/// (the request id is added on the way out), the server goes on.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a handler panicked");
    ApiError::internal().into_response()
}

/// CORS for the configured browser origins (`BFF_CORS_ORIGINS`): the API's
/// methods, the headers a client sends, and the ones it may read. None when
/// no origin is configured (then no CORS header is ever sent).
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("prefer"),
            ])
            .expose_headers([
                header::ETAG,
                header::RETRY_AFTER,
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("ratelimit"),
                http::HeaderName::from_static("ratelimit-policy"),
                http::HeaderName::from_static("preference-applied"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
