//! What the BFFs read from the domain services.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user profile (user service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Name shown in the apps.
    pub display_name: String,
    /// Full-size avatar image.
    pub avatar_url: String,
    /// Phone number.
    pub phone: String,
    /// BCP 47 locale.
    pub locale: String,
    /// IANA time zone.
    pub timezone: String,
    /// Postal addresses.
    pub addresses: Vec<Address>,
    /// App settings.
    pub preferences: Preferences,
    /// Loyalty membership.
    pub loyalty: Loyalty,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// "Home", "Work", …
    pub label: String,
    /// First line.
    pub line1: String,
    /// Second line.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Region or state.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166 country code.
    pub country: String,
    /// Default delivery address.
    pub is_default_shipping: bool,
}

/// App settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preferences {
    /// UI language.
    pub language: String,
    /// Display currency.
    pub currency: String,
    /// `light`, `dark` or `system`.
    pub theme: String,
    /// Notification settings.
    pub notifications: Notifications,
}

/// Notification settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    /// E-mail channel.
    pub email: bool,
    /// Push channel.
    pub push: bool,
    /// SMS channel.
    pub sms: bool,
    /// Order status updates.
    pub order_updates: bool,
    /// Promotions.
    pub promotions: bool,
    /// Price-drop alerts.
    pub price_drops: bool,
}

/// Loyalty membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loyalty {
    /// Programme tier (bronze … platinum).
    pub tier: String,
    /// Points to spend.
    pub points: u64,
    /// The next tier, if any.
    pub next_tier: Option<String>,
    /// Points missing to the next tier.
    pub points_to_next_tier: u64,
    /// Benefits of the tier.
    pub benefits: Vec<String>,
    /// Membership start (RFC 3339).
    pub member_since: String,
}

/// A page of a user's orders (order service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPage {
    /// How many orders the user has in all.
    pub total: u64,
    /// The orders of this page, newest first.
    pub orders: Vec<Order>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: Uuid,
    /// Human-readable number.
    pub number: String,
    /// `paid`, `shipped`, `delivered`, `cancelled`, `returned`.
    pub status: String,
    /// When it was placed (RFC 3339).
    pub created_at: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Total in minor units.
    pub total_minor: u64,
    /// Lines.
    pub items: Vec<OrderItem>,
    /// Delivery.
    pub shipping: Shipping,
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The product.
    pub product_id: Uuid,
    /// Product name at the time of the order.
    pub name: String,
    /// Product image.
    pub image_url: String,
    /// Units.
    pub quantity: u32,
    /// Price of one unit, minor units.
    pub unit_price_minor: u64,
    /// Line total, minor units.
    pub total_minor: u64,
}

/// Delivery of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipping {
    /// Carrier name.
    pub carrier: String,
    /// Where to follow the parcel.
    pub tracking_url: Option<String>,
    /// Expected delivery (RFC 3339).
    pub estimated_delivery: String,
    /// Actual delivery (RFC 3339).
    pub delivered_at: Option<String>,
}

/// Recommendations for a user (recommendation service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationList {
    /// Best first.
    pub recommendations: Vec<Recommendation>,
}

/// A recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The product.
    pub product_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its brand.
    pub brand: String,
    /// Its image.
    pub image_url: String,
    /// Price in minor units.
    pub price_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Average rating.
    pub rating_average: f64,
    /// Relevance, 0 to 1.
    pub score: f64,
    /// Why it is recommended.
    pub reason: String,
}

/// A page of a product's reviews (review service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPage {
    /// Average rating of all reviews.
    pub average_rating: f64,
    /// How many reviews in all.
    pub total: u64,
    /// The reviews of this page, newest first.
    pub reviews: Vec<Review>,
}

/// A review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Review id.
    pub id: Uuid,
    /// Shown author name.
    pub author_name: String,
    /// 1 to 5.
    pub rating: u8,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Bought through us.
    pub verified_purchase: bool,
    /// Helpful votes.
    pub helpful_votes: u32,
    /// When written (RFC 3339).
    pub created_at: String,
}

/// A catalogue product (product service, gRPC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Product id.
    pub id: Uuid,
    /// Stock keeping unit.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Brand.
    pub brand: String,
    /// Category.
    pub category: String,
    /// Images.
    pub images: Vec<Image>,
    /// Attributes (colour, material, …).
    pub attributes: BTreeMap<String, String>,
    /// Average rating.
    pub rating_average: f64,
    /// Number of ratings.
    pub rating_count: u32,
}

/// A product image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// URL.
    pub url: String,
    /// Alternative text.
    pub alt: String,
}

/// Stock of a product (inventory service, gRPC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    /// The product.
    pub product_id: Uuid,
    /// Units that can be sold now.
    pub available: i64,
    /// Per warehouse.
    pub warehouses: Vec<WarehouseStock>,
    /// Incremented on every change.
    pub version: u64,
}

/// Stock in one warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarehouseStock {
    /// Where.
    pub location: String,
    /// Units.
    pub available: i64,
}

/// The price of a product (pricing service, GraphQL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    /// The product.
    pub product_id: Uuid,
    /// Selling price, minor units.
    pub current: u64,
    /// List price, minor units.
    pub original: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Percentage off.
    pub discount: f64,
}

/// Many items by id: those found, and the ids that were not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch<T> {
    /// Found, in no particular order.
    pub found: Vec<T>,
    /// Asked for but unknown.
    pub missing: Vec<Uuid>,
}
