//! What the web app caches, for how long, and why.
//!
//! The browser shows a product page to many people at once: the product's
//! details and its reviews change rarely and are cached, shared by every
//! visitor, while price and stock are short-lived and evicted by their
//! change events (a price change reaches every replica within a second;
//! stock by the inventory stream of a watched product). The dashboard is
//! the user's own and should be current: profile and recommendations are
//! cached briefly per user, orders are always asked for (kept only to stand
//! in when the order service fails). The numbers, and the reason for each,
//! are in the README's cache table; `BFF_CACHE_{KIND}_FRESH`, `_REVALIDATE`
//! and `_STALE` override them per deployment.

use std::time::Duration;

use bff_cache::fragment::{Fragment, TagPrefix};
use bff_cache::tiered::{FragmentPolicy, Invalidation};
use bff_clients::PriceChange;
use bff_clients::models::{OrderPage, Price, Product, RecommendationList, ReviewPage, Stock, User};
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every fragment of one product carries the tag `product:{id}`, so an
/// operator can purge a product whole.
pub(crate) const PRODUCT_TAG: TagPrefix = TagPrefix::new("product");

/// The signed-in user's full profile: thirty seconds, so an edit made in
/// another tab shows on the next visit.
pub(crate) const USER: Fragment<Uuid, User> = Fragment::per_user("user", 1)
    .fresh_for(Duration::from_secs(30))
    .stale_for(Duration::from_secs(10 * 60))
    .approx_bytes(4 * 1024);

/// The user's latest orders (user, how many): never served fresh from the
/// cache (an order just placed must show), only standing in for a failure.
pub(crate) const ORDERS: Fragment<(Uuid, u32), OrderPage> = Fragment::per_user("orders", 1)
    .stale_for(Duration::from_secs(10 * 60))
    .approx_bytes(8 * 1024);

/// The user's recommendations (user, how many): computed in batches, so
/// five minutes fresh and half an hour of revalidation.
pub(crate) const RECOMMENDATIONS: Fragment<(Uuid, u32), RecommendationList> =
    Fragment::per_user("recommendations", 1)
        .fresh_for(Duration::from_secs(5 * 60))
        .revalidate_for(Duration::from_secs(30 * 60))
        .stale_for(HOUR)
        .approx_bytes(4 * 1024);

/// A product's details: edited rarely, so five minutes fresh and an hour
/// of revalidation; a day to stand in when the product service fails.
pub(crate) const PRODUCT: Fragment<Uuid, Product> = Fragment::shared("product", 1)
    .fresh_for(Duration::from_secs(5 * 60))
    .revalidate_for(HOUR)
    .stale_for(DAY)
    .approx_bytes(2 * 1024)
    .tagged(PRODUCT_TAG, Uuid::to_string);

/// A product's price: evicted by the pricing service's change event (every
/// replica, within a second), and fresh for ten seconds only in case an
/// event is missed.
pub(crate) const PRICE: Fragment<Uuid, Price> = Fragment::shared("price", 1)
    .fresh_for(Duration::from_secs(10))
    .stale_for(Duration::from_secs(10 * 60))
    .approx_bytes(256)
    .tagged(PRODUCT_TAG, Uuid::to_string);

/// A product's stock: evicted by the inventory stream while the product is
/// watched live, and fresh for two seconds otherwise.
pub(crate) const STOCK: Fragment<Uuid, Stock> = Fragment::shared("stock", 1)
    .fresh_for(Duration::from_secs(2))
    .stale_for(Duration::from_secs(5 * 60))
    .approx_bytes(512)
    .tagged(PRODUCT_TAG, Uuid::to_string);

/// A product's latest reviews (product, how many): new reviews may wait
/// five minutes, and a returning page gets the old ones at once for an hour
/// while they refresh.
pub(crate) const REVIEWS: Fragment<(Uuid, u32), ReviewPage> = Fragment::shared("reviews", 1)
    .fresh_for(Duration::from_secs(5 * 60))
    .revalidate_for(HOUR)
    .stale_for(DAY)
    .approx_bytes(4 * 1024)
    .tagged(PRODUCT_TAG, |(product, _)| product.to_string());

/// Every kind above, for the spec (configuration overrides, metrics).
pub(crate) const POLICIES: [FragmentPolicy; 7] = [
    USER.policy(),
    ORDERS.policy(),
    RECOMMENDATIONS.policy(),
    PRODUCT.policy(),
    PRICE.policy(),
    STOCK.policy(),
    REVIEWS.policy(),
];

/// What a price change evicts: that product's price, nothing else (its
/// details and reviews stay cached).
pub(crate) fn price_changed(change: &PriceChange) -> Vec<Invalidation> {
    vec![PRICE.invalidation(&change.product_id)]
}
