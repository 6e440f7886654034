//! Typed clients of the domain services, one per service, each on its
//! upstream's resilient stack from [`bff_upstream`].
//!
//! The models read only the fields some BFF uses; unknown fields are
//! ignored, so a service may grow without breaking us. They are
//! `Serialize` too, because the fragment cache stores them. What a BFF
//! caches, for how long and what invalidates it is that BFF's decision,
//! declared in its own crate: this crate holds data and clients only.
//!
//! [`upstreams`] declares each service once (name, protocol, default URL);
//! a BFF lists the ones it uses in its spec, and builds its clients from the
//! resulting [`bff_upstream::Registry`].

#![warn(missing_docs)]

mod by_id;
mod grpc;
pub mod models;
mod price_feed;
mod services;

pub use price_feed::{FeedEvent, PriceChange, PriceFeed, follow_price_changes};

pub use by_id::{ByIdClient, ByIdRpc, Call};
pub use grpc::{InventoryClient, ProductClient, ProductRpc, StockRpc, StockUpdate, StockWatch};
pub use services::{
    BATCH_WINDOW, MAX_BATCH, OrderClient, PRICE_QUERY, PRICES_QUERY, PricingClient,
    RecommendationClient, ReviewClient, UserClient,
};

/// The declarations of the domain services, for a BFF's spec.
pub mod upstreams {
    use bff_upstream::{Protocol, UpstreamDecl};

    /// The user service (REST).
    pub const USER: UpstreamDecl = UpstreamDecl {
        name: "user",
        protocol: Protocol::Rest,
        default_url: "http://127.0.0.1:7001",
    };
    /// The order service (REST).
    pub const ORDER: UpstreamDecl = UpstreamDecl {
        name: "order",
        protocol: Protocol::Rest,
        default_url: "http://127.0.0.1:7002",
    };
    /// The recommendation service (REST).
    pub const RECOMMENDATION: UpstreamDecl = UpstreamDecl {
        name: "recommendation",
        protocol: Protocol::Rest,
        default_url: "http://127.0.0.1:7003",
    };
    /// The product service (gRPC `catalog.v1.ProductService`).
    pub const PRODUCT: UpstreamDecl = UpstreamDecl {
        name: "product",
        protocol: Protocol::Grpc,
        default_url: "http://127.0.0.1:7004",
    };
    /// The pricing service (GraphQL).
    pub const PRICING: UpstreamDecl = UpstreamDecl {
        name: "pricing",
        protocol: Protocol::GraphQl,
        default_url: "http://127.0.0.1:7005/graphql",
    };
    /// The review service (REST).
    pub const REVIEW: UpstreamDecl = UpstreamDecl {
        name: "review",
        protocol: Protocol::Rest,
        default_url: "http://127.0.0.1:7006",
    };
    /// The inventory service (gRPC `inventory.v1.InventoryService`).
    pub const INVENTORY: UpstreamDecl = UpstreamDecl {
        name: "inventory",
        protocol: Protocol::Grpc,
        default_url: "http://127.0.0.1:7007",
    };

    /// Every domain service.
    pub const ALL: [UpstreamDecl; 7] = [
        USER,
        ORDER,
        RECOMMENDATION,
        PRODUCT,
        PRICING,
        REVIEW,
        INVENTORY,
    ];
}

/// The pricing service's price-change channel (Redis pub/sub): what each
/// BFF's cache listens to, to evict the fragments it declares invalidated
/// by a price change.
pub const PRICE_EVENTS: &str = "demo.pricing.price-changed";
