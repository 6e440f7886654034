//! The web team's BFF.
//!
//! The browser gets rich pages in one round trip each: the dashboard (full
//! profile, recent orders with their items, ten recommendations, loyalty)
//! and the product page, which fans out to four services over three
//! protocols — product (gRPC), pricing (GraphQL), reviews (REST) and
//! inventory (gRPC) — concurrently, each section with its own deadline.

#![warn(missing_docs)]

mod dashboard;
mod fragments;
mod live;
mod product;

use axum::Router;
use bff_clients::{
    InventoryClient, OrderClient, PriceFeed, PricingClient, ProductClient, RecommendationClient,
    ReviewClient, UserClient, upstreams,
};
use bff_edge::{AdmissionClass, BffSpec, BffState, EdgeBuilder, Shared, StartError};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DESCRIPTION: &str =
    "The web app's BFF: rich pages in one round trip each, fanned out over gRPC, GraphQL and REST.";

/// Name, audience and default port of this BFF.
pub const SPEC: BffSpec = BffSpec {
    version: env!("CARGO_PKG_VERSION"),
    name: "bff-web",
    default_port: 8082,
    upstreams: &upstreams::ALL,
    fragments: &fragments::POLICIES,
    flags: &[],
};

/// What the handlers use.
#[derive(Clone, Debug)]
pub struct AppState {
    users: UserClient,
    orders: OrderClient,
    recommendations: RecommendationClient,
    products: ProductClient,
    pricing: PricingClient,
    reviews: ReviewClient,
    inventory: InventoryClient,
    live: live::Live,
}

/// The web BFF's app over `shared`.
pub async fn app(shared: Shared) -> Result<Router, StartError> {
    let registry = shared.registry();
    let pricing = PricingClient::new(registry)?;
    let inventory = InventoryClient::new(registry)?;
    let feed = PriceFeed::new(
        &pricing,
        registry.http().reqwest().clone(),
        shared.config().redis_url.as_deref(),
    )
    .map_err(|e| StartError::Part {
        part: "price feed",
        message: e.to_string(),
    })?;
    let live = live::Live::new(
        shared.streams().clone(),
        inventory.clone(),
        pricing.clone(),
        shared.fragments().clone(),
        shared.config().deadlines,
        feed,
    );
    let state = AppState {
        users: UserClient::new(registry)?,
        orders: OrderClient::new(registry)?,
        recommendations: RecommendationClient::new(registry)?,
        products: ProductClient::new(registry)?,
        pricing,
        reviews: ReviewClient::new(registry)?,
        inventory,
        live,
    };
    // A price change evicts that product's price fragment (every replica).
    bff_clients::follow_price_changes(
        &state.pricing,
        registry.http().reqwest().clone(),
        shared.fragments().cache(),
        fragments::price_changed,
    );
    let state = BffState::new(state, shared.aggregate_state());
    let (pages, mut doc) = OpenApiRouter::new()
        .routes(routes!(dashboard::dashboard))
        .routes(routes!(product::product_page))
        .with_state(state.clone())
        .split_for_parts();
    let (streams, streams_doc) = OpenApiRouter::new()
        .routes(routes!(live::live))
        .with_state(state)
        .split_for_parts();
    doc.merge(streams_doc);
    Ok(EdgeBuilder::new(shared)
        .authenticated_in(PAGES, pages)
        .authenticated_in(LIVE, streams)
        .openapi(doc, DESCRIPTION)
        .build())
}

/// The pages keep 60% of the limit on requests in flight: a storm of live
/// streams reconnecting (after a deploy, say) cannot take their places.
const PAGES: AdmissionClass = AdmissionClass {
    name: "pages",
    share: 60,
};

/// Opening live streams keeps 20%: while the pages are busy, clients can
/// still subscribe to updates (the place is held until the stream's first
/// answer, not for the stream's life).
const LIVE: AdmissionClass = AdmissionClass {
    name: "live",
    share: 20,
};
