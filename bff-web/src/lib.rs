//! The web team's BFF.
//!
//! The browser gets rich pages in one round trip each: the dashboard (full
//! profile, recent orders with their items, ten recommendations, loyalty)
//! and the product page, which fans out to four services over three
//! protocols — product (gRPC), pricing (GraphQL), reviews (REST) and
//! inventory (gRPC) — concurrently, each section with its own deadline.

#![warn(missing_docs)]

use std::sync::Arc;

mod dashboard;
mod product;

use axum::Router;
use axum::routing::get;
use bff_clients::{
    InventoryClient, OrderClient, PricingClient, ProductClient, RecommendationClient, ReviewClient,
    UserClient,
};
use bff_edge::{BffSpec, EdgeBuilder, Shared, StartError};

/// Name, audience and default port of this BFF.
pub const SPEC: BffSpec = BffSpec {
    name: "bff-web",
    default_port: 8082,
};

/// What the handlers use.
#[derive(Clone, Debug)]
pub struct AppState {
    shared: Shared,
    users: UserClient,
    orders: OrderClient,
    recommendations: RecommendationClient,
    products: ProductClient,
    pricing: PricingClient,
    reviews: ReviewClient,
    inventory: InventoryClient,
}

/// The web BFF's app over `shared`.
pub async fn app(shared: Shared) -> Result<Router, StartError> {
    let state = AppState {
        users: shared.user_client(),
        orders: shared.order_client(),
        recommendations: shared.recommendation_client(),
        products: shared.product_client()?,
        pricing: shared.pricing_client(),
        reviews: shared.review_client(),
        inventory: shared.inventory_client()?,
        shared: shared.clone(),
    };
    let api = Router::new()
        .route("/v1/dashboard", get(dashboard::dashboard))
        .route("/v1/products/{product_id}", get(product::product_page))
        .with_state(Arc::new(state));
    Ok(EdgeBuilder::new(shared).authenticated(api).build())
}
