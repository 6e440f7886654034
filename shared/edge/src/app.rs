//! The composition of a BFF's app: its authenticated API routes behind the
//! API stack (`api`), the admin, document and health routes, and
//! the edge layers every BFF has, in the same order everywhere.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use bff_problem::ApiError;
use http::{HeaderValue, Method, header};
use tower::layer::util::Identity;
use tower::{Layer, Service};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::admission::{self, AdmissionClass};
use crate::api::{self, Pieces};
use crate::context::RequestContextLayer;
use crate::etag::PerEncodingLayer;
use crate::metrics_layer::MetricsLayer;
use crate::ratelimit::Limits;
use crate::shared::Shared;
use crate::{admin, health, openapi};

/// Authenticated routes waiting for the API stack: they are put behind it
/// when the app is built, so that what the BFF declares about every route
/// ([`EdgeBuilder::charging`]) holds whatever the order of the calls.
type Pending = Box<dyn FnOnce(&Pieces) -> Router + Send>;

/// Composes a BFF's app: its authenticated API routes, the health routes,
/// and the edge layers every BFF has, in the same order everywhere.
pub struct EdgeBuilder {
    shared: Shared,
    api: Vec<Pending>,
    /// What the API stack is made of, one for every authenticated route
    /// (probes and metrics are outside it).
    pieces: Pieces,
    /// The routes' document and description, finished when the app is
    /// built (what the BFF charges is in it).
    document: Option<(utoipa::openapi::OpenApi, String)>,
}

impl std::fmt::Debug for EdgeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeBuilder")
            .field("shared", &self.shared)
            .field("route_sets", &self.api.len())
            .field("pieces", &self.pieces)
            .finish_non_exhaustive()
    }
}

impl EdgeBuilder {
    /// A builder over `shared`.
    pub fn new(shared: Shared) -> Self {
        let config = shared.config();
        let pieces = Pieces {
            limiter: admission::limiter(config),
            queue: config.admission_queue,
            limits: shared
                .limiter()
                .map(|limiter| Arc::new(Limits::new(limiter.clone(), config.name))),
            auth: shared.auth().clone(),
            cost: None,
        };
        EdgeBuilder {
            shared,
            api: Vec::new(),
            pieces,
            document: None,
        }
    }

    /// Charges every authenticated request its `cost` in the BFF's unit
    /// instead of one request ([`crate::ratelimit`]): a team whose requests
    /// cost the upstreams very different amounts (a batch of 50 ids and one
    /// id) declares what each costs, so callers' quotas follow the work.
    pub fn charging(mut self, cost: bff_ratelimit::Cost) -> Self {
        self.pieces.cost = Some(cost);
        self
    }

    /// Adds routes that require a verified bearer token, rate-limited per
    /// caller (and, for failed authentications, per client address), within
    /// the limit on API requests in flight: the API stack (`src/api/`).
    pub fn authenticated(self, routes: Router) -> Self {
        self.authenticated_in_with(AdmissionClass::DEFAULT, routes, Identity::new())
    }

    /// [`EdgeBuilder::authenticated`], admitted in `class`: the share of
    /// the limit on requests in flight kept for it cannot be taken by the
    /// routes of other classes ([`crate::admission`]).
    pub fn authenticated_in(self, class: AdmissionClass, routes: Router) -> Self {
        self.authenticated_in_with(class, routes, Identity::new())
    }

    /// [`EdgeBuilder::authenticated`], with `layer` between the API stack
    /// and the handlers: a BFF's own concern for these routes only, which
    /// sees the verified [`bff_auth::Claims`] in the request and runs only
    /// for requests the stack let through. It joins the stack's one
    /// `route_layer`, so it costs no extra boxed service per request.
    pub fn authenticated_with<L>(self, routes: Router, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.authenticated_in_with(AdmissionClass::DEFAULT, routes, layer)
    }

    /// [`EdgeBuilder::authenticated_with`], admitted in `class`.
    pub fn authenticated_in_with<L>(
        mut self,
        class: AdmissionClass,
        routes: Router,
        layer: L,
    ) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.api.push(Box::new(move |pieces| {
            api::protect(routes, pieces, class, layer)
        }));
        self
    }

    /// Serves the OpenAPI document of the routes (`GET /openapi.json`), with
    /// what every route shares added ([`crate::openapi::document`]).
    pub fn openapi(mut self, doc: utoipa::openapi::OpenApi, description: &str) -> Self {
        self.document = Some((doc, description.to_owned()));
        self
    }

    /// The finished app. Layers, from the outside in: request context and
    /// problem rescue, metrics, compression (br preferred, gzip), body limit.
    pub fn build(self) -> Router {
        let body_limit = self.shared.config().body_limit;
        let name = self.shared.config().name;
        let admin = admin::router(&self.shared).unwrap_or_default();
        let document = self
            .document
            .map(|(doc, description)| {
                openapi::router(&openapi::document_charging(
                    doc,
                    name,
                    self.shared.config().version,
                    &description,
                    self.pieces.cost.as_ref(),
                ))
            })
            .unwrap_or_default();
        let cors = cors(&self.shared.config().cors_origins);
        // One layer on the routes, not one per middleware: axum wraps a
        // route in a boxed service per `layer` call, and each of those is
        // cloned and boxed again on every request.
        let edge = tower::ServiceBuilder::new()
            .layer(
                RequestContextLayer::new(name)
                    .trusting(self.shared.config().trusted_proxies.clone()),
            )
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
        let api = self
            .api
            .into_iter()
            .fold(Router::new(), |all, routes| all.merge(routes(&self.pieces)));
        Router::new()
            .merge(api)
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
