//! The partner-integrations team's BFF.
//!
//! Partners integrate once and expect the API to hold still: it is
//! versioned (`/v1`, `/v2`, or `/products` with an `API-Version` header,
//! where a partner sending none is moved from v1 to v2 by the flag
//! `unversioned-version`),
//! v1 announces its retirement with `Deprecation`, `Sunset` and a
//! successor `Link`, and a batch of up to 50 products costs exactly one call
//! per upstream, whatever its size. Every route needs the `catalog:read`
//! scope. A partner's quota is counted in product ids: a batch of 50 costs
//! 50, one id costs 1.

#![warn(missing_docs)]

mod fragments;
mod products;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use bff_auth::Claims;
use bff_clients::{InventoryClient, PricingClient, ProductClient, upstreams};
use bff_edge::versioning;
use bff_edge::{BffSpec, BffState, EdgeBuilder, Shared, StartError};
use bff_problem::ApiError;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DESCRIPTION: &str =
    "The partners' BFF: a stable, versioned batch catalogue API with tiered rate limits.";

/// Name, audience and default port of this BFF.
pub const SPEC: BffSpec = BffSpec {
    version: env!("CARGO_PKG_VERSION"),
    name: "bff-partner",
    default_port: 8083,
    upstreams: &[upstreams::PRODUCT, upstreams::PRICING, upstreams::INVENTORY],
    fragments: &fragments::POLICIES,
    flags: &[products::UNVERSIONED],
};

/// The scope every partner route requires.
pub const SCOPE: &str = "catalog:read";

/// What the handlers use.
#[derive(Clone, Debug)]
pub struct AppState {
    products: ProductClient,
    pricing: PricingClient,
    inventory: InventoryClient,
    flags: bff_edge::flags::Flags,
}

async fn require_catalog_scope(
    claims: Claims,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    claims.require_scope(SCOPE)?;
    Ok(next.run(request).await)
}

/// The partner BFF's app over `shared`.
pub async fn app(shared: Shared) -> Result<Router, StartError> {
    let registry = shared.registry();
    let state = AppState {
        products: ProductClient::new(registry)?,
        pricing: PricingClient::new(registry)?,
        inventory: InventoryClient::new(registry)?,
        flags: shared.flags().clone(),
    };
    // A price change evicts that product's price fragment (every replica).
    bff_clients::follow_price_changes(
        &state.pricing,
        registry.http().reqwest().clone(),
        shared.fragments().cache(),
        fragments::price_changed,
    );
    let v1 = OpenApiRouter::new()
        .routes(routes!(products::v1))
        .route_layer(from_fn_with_state(products::V1, versioning::version));
    let v2 = OpenApiRouter::new()
        .routes(routes!(products::v2))
        .route_layer(from_fn_with_state(products::V2, versioning::version));
    let (api, doc) = OpenApiRouter::new()
        .merge(v1)
        .merge(v2)
        .routes(routes!(products::negotiated))
        .with_state(BffState::new(state, shared.aggregate_state()))
        .split_for_parts();
    // The scope check is a concern of these routes only, after the token is
    // verified: it joins the edge's API stack rather than adding a layer.
    Ok(EdgeBuilder::new(shared)
        .charging(products::COST)
        .authenticated_with(api, from_fn(require_catalog_scope))
        .openapi(doc, DESCRIPTION)
        .build())
}
