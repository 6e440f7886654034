//! The records the demo services hold, serialised exactly as the REST
//! services return them (snake_case JSON, money in minor units, RFC 3339
//! timestamps). They are deliberately rich: a BFF is supposed to trim them.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

/// A customer profile as the user service returns it.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub avatar_url: String,
    pub phone: String,
    pub date_of_birth: String,
    pub locale: String,
    pub timezone: String,
    pub status: String,
    /// Rate-limit tier carried into tokens (`free`, `standard`, `premium`).
    pub tier: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_login_at: String,
    pub addresses: Vec<Address>,
    pub preferences: Preferences,
    pub loyalty: Loyalty,
    pub payment_methods: Vec<PaymentMethod>,
    pub devices: Vec<Device>,
    pub marketing: Marketing,
}

/// A postal address.
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    pub id: Uuid,
    pub label: String,
    pub recipient: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
    pub is_default_shipping: bool,
    pub is_default_billing: bool,
    pub delivery_instructions: Option<String>,
}

/// What the user chose in the app settings.
#[derive(Debug, Clone, Serialize)]
pub struct Preferences {
    pub language: String,
    pub currency: String,
    pub theme: String,
    pub notifications: Notifications,
    pub favorite_categories: Vec<String>,
    pub sizes: BTreeMap<String, String>,
    pub accessibility: Accessibility,
    pub privacy: Privacy,
}

/// Notification channels and topics.
#[derive(Debug, Clone, Serialize)]
pub struct Notifications {
    pub email: bool,
    pub push: bool,
    pub sms: bool,
    pub order_updates: bool,
    pub promotions: bool,
    pub price_drops: bool,
    pub back_in_stock: bool,
    pub quiet_hours_start: String,
    pub quiet_hours_end: String,
}

/// Accessibility settings.
#[derive(Debug, Clone, Serialize)]
pub struct Accessibility {
    pub reduced_motion: bool,
    pub high_contrast: bool,
    pub font_scale: f64,
    pub screen_reader_hints: bool,
}

/// Privacy settings.
#[derive(Debug, Clone, Serialize)]
pub struct Privacy {
    pub personalised_recommendations: bool,
    pub share_purchase_history: bool,
    pub analytics_consent: bool,
    pub consent_updated_at: String,
}

/// Loyalty programme membership.
#[derive(Debug, Clone, Serialize)]
pub struct Loyalty {
    pub program: String,
    pub member_id: String,
    pub tier: String,
    pub points: u64,
    pub lifetime_points: u64,
    pub member_since: String,
    pub next_tier: Option<String>,
    pub points_to_next_tier: u64,
    pub benefits: Vec<String>,
    pub history: Vec<LoyaltyEvent>,
}

/// One entry of the loyalty points history.
#[derive(Debug, Clone, Serialize)]
pub struct LoyaltyEvent {
    pub at: String,
    pub kind: String,
    pub points: i64,
    pub description: String,
}

/// A stored payment method (never a full card number).
#[derive(Debug, Clone, Serialize)]
pub struct PaymentMethod {
    pub id: Uuid,
    pub kind: String,
    pub brand: String,
    pub last4: String,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub holder_name: String,
    pub is_default: bool,
    pub billing_address_id: Uuid,
}

/// A device the user signed in from.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: Uuid,
    pub platform: String,
    pub model: String,
    pub os_version: String,
    pub app_version: String,
    pub push_enabled: bool,
    pub last_seen_at: String,
}

/// Marketing attributes.
#[derive(Debug, Clone, Serialize)]
pub struct Marketing {
    pub newsletter_subscribed: bool,
    pub referral_code: String,
    pub acquisition_channel: String,
    pub segments: Vec<String>,
}

/// An order as the order service returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: Uuid,
    pub number: String,
    pub user_id: Uuid,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub currency: String,
    pub items: Vec<OrderItem>,
    pub subtotal_minor: u64,
    pub discount_minor: u64,
    pub tax_minor: u64,
    pub shipping_minor: u64,
    pub total_minor: u64,
    pub shipping: Shipping,
    pub payment: Payment,
    pub events: Vec<OrderEvent>,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub brand: String,
    pub image_url: String,
    pub quantity: u32,
    pub unit_price_minor: u64,
    pub discount_minor: u64,
    pub total_minor: u64,
}

/// Delivery of an order.
#[derive(Debug, Clone, Serialize)]
pub struct Shipping {
    pub method: String,
    pub carrier: String,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub address: Address,
    pub estimated_delivery: String,
    pub delivered_at: Option<String>,
}

/// Payment of an order.
#[derive(Debug, Clone, Serialize)]
pub struct Payment {
    pub method_id: Uuid,
    pub kind: String,
    pub brand: String,
    pub last4: String,
    pub status: String,
    pub captured_at: Option<String>,
}

/// A status change in an order's life.
#[derive(Debug, Clone, Serialize)]
pub struct OrderEvent {
    pub at: String,
    pub status: String,
    pub note: String,
}

/// A catalogue entry (served over gRPC; this is the in-memory form).
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub images: Vec<Image>,
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub rating_average: f64,
    pub rating_count: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A product image.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub url: String,
    pub alt: String,
    pub width: u32,
    pub height: u32,
}

/// The price of a product (served over GraphQL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub product_id: Uuid,
    /// Current selling price in minor units (cents).
    pub current: u64,
    /// List price before discount, in minor units.
    pub original: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Percentage off the list price, 0 to 100.
    pub discount: f64,
    /// Incremented on every change.
    pub version: u64,
    pub updated_at: String,
}

/// Stock of a product (served over gRPC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StockLevel {
    pub product_id: Uuid,
    pub available: i64,
    pub reserved: i64,
    pub warehouses: Vec<WarehouseLevel>,
    pub version: u64,
    pub updated_at: i64,
}

/// Stock held in one warehouse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarehouseLevel {
    pub warehouse_id: String,
    pub location: String,
    pub available: i64,
}

/// A product review as the review service returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub id: Uuid,
    pub product_id: Uuid,
    pub user_id: Uuid,
    pub author_name: String,
    pub rating: u8,
    pub title: String,
    pub body: String,
    pub locale: String,
    pub verified_purchase: bool,
    pub helpful_votes: u32,
    pub created_at: String,
}

/// A product suggested to a user.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub rank: u32,
    pub product_id: Uuid,
    pub name: String,
    pub brand: String,
    pub category: String,
    pub image_url: String,
    pub price_minor: u64,
    pub currency: String,
    pub rating_average: f64,
    pub score: f64,
    pub reason: String,
    pub algorithm: String,
}

/// A partner allowed to use the client-credentials grant.
#[derive(Debug, Clone, Serialize)]
pub struct PartnerClient {
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub tier: String,
}
