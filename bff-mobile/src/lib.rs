//! The mobile team's BFF.
//!
//! One screen, one call: `GET /v1/dashboard` gives a phone exactly what its
//! home screen shows — the user's name, avatar and app preferences, the last
//! five orders as one-liners, three recommendations — in a fraction of the
//! bytes the domain services return, with a strong ETag so an unchanged
//! dashboard costs a 304. A layout experiment (flag `dashboard-layout`)
//! shows some users three orders instead of five. Everything else (tokens, resilience, errors,
//! compression, telemetry) comes from the shared crates.

#![warn(missing_docs)]

mod dashboard;
mod fragments;
mod images;
mod sources;

use axum::Router;
use bff_clients::{OrderClient, RecommendationClient, UserClient, upstreams};
use bff_edge::{BffSpec, BffState, EdgeBuilder, Shared, StartError};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DESCRIPTION: &str = "The mobile app's BFF: one call per screen, slim payloads, ETags.";

/// Name, audience and default port of this BFF.
pub const SPEC: BffSpec = BffSpec {
    version: env!("CARGO_PKG_VERSION"),
    name: "bff-mobile",
    default_port: 8081,
    upstreams: &[upstreams::USER, upstreams::ORDER, upstreams::RECOMMENDATION],
    fragments: &fragments::POLICIES,
    flags: &[dashboard::LAYOUT],
};

/// What the handlers use.
#[derive(Clone, Debug)]
pub struct AppState {
    users: UserClient,
    orders: OrderClient,
    recommendations: RecommendationClient,
    flags: bff_edge::flags::Flags,
}

/// The mobile BFF's app over `shared`.
pub async fn app(shared: Shared) -> Result<Router, StartError> {
    let registry = shared.registry();
    let state = AppState {
        users: UserClient::new(registry)?,
        orders: OrderClient::new(registry)?,
        recommendations: RecommendationClient::new(registry)?,
        flags: shared.flags().clone(),
    };
    let (api, doc) = OpenApiRouter::new()
        .routes(routes!(dashboard::dashboard))
        .layer(bff_edge::etag::EtagLayer)
        .with_state(BffState::new(state, shared.aggregate_state()))
        .split_for_parts();
    Ok(EdgeBuilder::new(shared)
        .authenticated(api)
        .openapi(doc, DESCRIPTION)
        .build())
}
