//! What the partner API caches, for how long, and why.
//!
//! Partners ask for batches of products, and many partners ask for the same
//! popular ones: each product, price and stock level is cached on its own,
//! per product id, shared by every partner (nothing here is per caller), so
//! a batch only fetches the ids no recent batch has loaded. Product details
//! change rarely; a price is kept only briefly and evicted the moment the
//! pricing service publishes a change to it; stock moves fastest of all.
//! The numbers, and the reason for each, are in the README's cache table;
//! `BFF_CACHE_{KIND}_FRESH`, `_REVALIDATE` and `_STALE` override them.

use std::time::Duration;

use bff_cache::fragment::{Fragment, TagPrefix};
use bff_cache::tiered::{FragmentPolicy, Invalidation};
use bff_clients::PriceChange;
use bff_clients::models::{Price, Product, Stock};
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);

/// Every fragment of one product carries the tag `product:{id}`, so an
/// operator can purge a product whole.
pub(crate) const PRODUCT_TAG: TagPrefix = TagPrefix::new("product");

/// A product's details: edited rarely, so five minutes fresh and an hour of
/// revalidation; a day to stand in when the product service fails.
pub(crate) const PRODUCT: Fragment<Uuid, Product> = Fragment::shared("product", 1)
    .fresh_for(Duration::from_secs(5 * 60))
    .revalidate_for(HOUR)
    .stale_for(Duration::from_secs(24 * 3600))
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

/// A product's stock: no event reaches this BFF, so two seconds fresh.
pub(crate) const STOCK: Fragment<Uuid, Stock> = Fragment::shared("stock", 1)
    .fresh_for(Duration::from_secs(2))
    .stale_for(Duration::from_secs(5 * 60))
    .approx_bytes(512)
    .tagged(PRODUCT_TAG, Uuid::to_string);

/// Every kind above, for the spec (configuration overrides, metrics).
pub(crate) const POLICIES: [FragmentPolicy; 3] = [PRODUCT.policy(), PRICE.policy(), STOCK.policy()];

/// What a price change evicts: that product's price, nothing else.
pub(crate) fn price_changed(change: &PriceChange) -> Vec<Invalidation> {
    vec![PRICE.invalidation(&change.product_id)]
}
