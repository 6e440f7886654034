//! What every BFF of a process shares, and the composition of its app.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use bff_auth::{AuthConfig, Authenticator};
use bff_cache::FragmentCache;
use bff_clients::{
    InventoryClient, OrderClient, PricingClient, ProductClient, RecommendationClient, ReviewClient,
    UserClient,
};
use bff_problem::ApiError;
use bff_upstream::{GraphQlClient, HttpClient, RestClient, Upstream, grpc};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::config::BffConfig;
use crate::{context, health, metrics_layer};

/// Why a BFF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP client pool could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A gRPC endpoint is unusable.
    #[error("invalid gRPC endpoint for {upstream}: {source}")]
    Grpc {
        /// Which upstream.
        upstream: &'static str,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

struct Inner {
    config: BffConfig,
    http: HttpClient,
    auth: Arc<Authenticator>,
    cache: FragmentCache,
    upstreams: Mutex<Vec<Arc<Upstream>>>,
}

/// The process-wide pieces of a BFF: configuration, the HTTP pool, the
/// authenticator, the fragment cache and the upstreams (for readiness).
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
            tracing::warn!(
                "REDIS_URL is set, but this build keeps cache and limits in process only"
            );
        }
        if config.otlp_endpoint.is_some() {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build does not export traces yet"
            );
        }
        // Install the metrics recorder before anything records.
        bff_telemetry::prometheus();
        let http = HttpClient::new(config.connect_timeout)?;
        let mut auth_config = AuthConfig::new(
            config.jwks_url.as_str(),
            config.issuer.clone(),
            config.audience.clone(),
        );
        auth_config.refresh_every = config.jwks_refresh;
        let auth = Authenticator::start(auth_config, http.clone());
        let cache = FragmentCache::new(config.cache_max_entries, config.cache_stale_for);
        Ok(Shared {
            inner: Arc::new(Inner {
                config,
                http,
                auth,
                cache,
                upstreams: Mutex::new(Vec::new()),
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
    pub fn cache(&self) -> &FragmentCache {
        &self.inner.cache
    }

    /// Every upstream created so far.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.inner
            .upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn upstream(&self, name: &'static str) -> Arc<Upstream> {
        let upstream = Upstream::new(name, self.inner.config.policy(name));
        self.inner
            .upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(upstream.clone());
        upstream
    }

    fn rest(&self, name: &'static str) -> RestClient {
        RestClient::new(
            self.inner.http.clone(),
            self.inner.config.upstream_url(name).clone(),
            self.upstream(name),
        )
    }

    fn channel(&self, name: &'static str) -> Result<tonic::transport::Channel, StartError> {
        grpc::channel(
            self.inner.config.upstream_url(name).as_str(),
            self.inner.config.connect_timeout,
        )
        .map_err(|source| StartError::Grpc {
            upstream: name,
            source,
        })
    }

    /// The user service client.
    pub fn user_client(&self) -> UserClient {
        UserClient::new(self.rest("user"))
    }

    /// The order service client.
    pub fn order_client(&self) -> OrderClient {
        OrderClient::new(self.rest("order"))
    }

    /// The recommendation service client.
    pub fn recommendation_client(&self) -> RecommendationClient {
        RecommendationClient::new(self.rest("recommendation"))
    }

    /// The review service client.
    pub fn review_client(&self) -> ReviewClient {
        ReviewClient::new(self.rest("review"))
    }

    /// The pricing service client.
    pub fn pricing_client(&self) -> PricingClient {
        let endpoint = self.inner.config.upstream_url("pricing").clone();
        PricingClient::new(GraphQlClient::new(
            self.inner.http.clone(),
            endpoint,
            self.upstream("pricing"),
        ))
    }

    /// The product service client.
    pub fn product_client(&self) -> Result<ProductClient, StartError> {
        let channel = self.channel("product")?;
        let timeout = self.inner.config.policy("product").timeout;
        Ok(ProductClient::new(
            channel,
            self.upstream("product"),
            timeout,
        ))
    }

    /// The inventory service client.
    pub fn inventory_client(&self) -> Result<InventoryClient, StartError> {
        let channel = self.channel("inventory")?;
        let timeout = self.inner.config.policy("inventory").timeout;
        Ok(InventoryClient::new(
            channel,
            self.upstream("inventory"),
            timeout,
        ))
    }
}

/// Composes a BFF's app: its authenticated API routes, the health routes,
/// and the edge layers every BFF has, in the same order everywhere.
#[derive(Debug)]
pub struct EdgeBuilder {
    shared: Shared,
    api: Router,
}

impl EdgeBuilder {
    /// A builder over `shared`.
    pub fn new(shared: Shared) -> Self {
        EdgeBuilder {
            shared,
            api: Router::new(),
        }
    }

    /// Adds routes that require a verified bearer token.
    pub fn authenticated(mut self, routes: Router) -> Self {
        let auth = self.shared.auth().clone();
        self.api = self
            .api
            .merge(routes.route_layer(from_fn_with_state(auth, bff_auth::require_auth)));
        self
    }

    /// The finished app. Layers, from the outside in: request context and
    /// problem rescue, metrics, compression (br preferred, gzip), body limit.
    pub fn build(self) -> Router {
        let body_limit = self.shared.config().body_limit;
        Router::new()
            .merge(self.api)
            .merge(health::router(self.shared))
            .fallback(|| async { ApiError::not_found("no such resource") })
            .layer(RequestBodyLimitLayer::new(body_limit))
            .layer(CompressionLayer::new().br(true).gzip(true))
            .layer(from_fn(metrics_layer::record))
            .layer(from_fn(context::request_context))
    }
}
