//! Typed clients of the domain services, one per service, each on its
//! upstream's resilient stack from [`bff_upstream`].
//!
//! The models read only the fields some BFF uses; unknown fields are
//! ignored, so a service may grow without breaking us. They are
//! `Serialize` too, because the fragment cache stores them.
//!
//! [`upstreams`] declares each service once (name, protocol, default URL);
//! a BFF lists the ones it uses in its spec, and builds its clients from the
//! resulting [`bff_upstream::Registry`].

#![warn(missing_docs)]

pub mod models;
mod price_feed;
mod services;

pub use price_feed::{FeedEvent, PriceChange, PriceFeed, follow_price_changes};

pub use services::{
    BATCH_WINDOW, Call, InventoryClient, MAX_BATCH, OrderClient, PRICE_QUERY, PRICES_QUERY,
    PricingClient, ProductClient, RecommendationClient, ReviewClient, StockUpdate, StockWatch,
    UserClient,
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

/// The kinds of fragment the BFFs cache, with their default policies: kept
/// only to stand in for a failed section (ten minutes), never served fresh
/// until configuration says so (`BFF_CACHE_{KIND}_FRESH`, `_REVALIDATE`,
/// `_STALE`); `approx_bytes` weighs a fragment in the in-process tier when
/// it is not serialised for Redis.
pub mod fragments {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bff_cache::tiered::{EventMapper, FragmentPolicy, Invalidation};

    const fn stand_in(kind: &'static str, approx_bytes: u32, per_user: bool) -> FragmentPolicy {
        FragmentPolicy {
            kind,
            fresh_for: Duration::ZERO,
            revalidate_for: Duration::ZERO,
            stale_for: Duration::from_secs(600),
            approx_bytes,
            per_user,
        }
    }

    /// A user's profile (`user:{id}`).
    pub const USER: FragmentPolicy = stand_in("user", 4 * 1024, true);
    /// A user's latest orders (`orders:{id}:{n}`).
    pub const ORDERS: FragmentPolicy = stand_in("orders", 8 * 1024, true);
    /// A user's recommendations (`recommendations:{id}:{n}`).
    pub const RECOMMENDATIONS: FragmentPolicy = stand_in("recommendations", 4 * 1024, true);
    /// A product (`product:{id}`).
    pub const PRODUCT: FragmentPolicy = stand_in("product", 2 * 1024, false);
    /// A product's price (`price:{id}`), invalidated by price events.
    pub const PRICE: FragmentPolicy = stand_in("price", 256, false);
    /// A product's latest reviews (`reviews:{id}:{n}`).
    pub const REVIEWS: FragmentPolicy = stand_in("reviews", 4 * 1024, false);
    /// A product's stock (`stock:{id}`).
    pub const STOCK: FragmentPolicy = stand_in("stock", 512, false);

    /// The pricing service's price-change channel (Redis pub/sub).
    pub const PRICE_EVENTS: &str = "demo.pricing.price-changed";

    /// What a price-change event invalidates: that product's price
    /// fragment, and nothing else.
    pub fn price_events() -> HashMap<String, EventMapper> {
        let map: EventMapper = Arc::new(|payload: &[u8]| {
            #[derive(serde::Deserialize)]
            struct PriceChanged {
                product_id: uuid::Uuid,
            }
            match serde_json::from_slice::<PriceChanged>(payload) {
                Ok(event) => vec![Invalidation::Key(format!("price:{}", event.product_id))],
                Err(error) => {
                    tracing::warn!(%error, "unreadable price event ignored");
                    Vec::new()
                }
            }
        });
        HashMap::from([(PRICE_EVENTS.to_owned(), map)])
    }
}
