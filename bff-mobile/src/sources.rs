//! What the dashboard reads of each upstream document, and nothing more.
//!
//! The services send far more than a phone shows (a user's addresses,
//! loyalty and contact details; each order's shipping and line prices;
//! each recommendation's brand, rating and reason). Decoding into the shared
//! models would allocate a `String` for every one of those fields on every
//! request, only to drop it after shaping: these types name the fields the
//! dashboard uses, and serde skips the rest of the document without
//! keeping it. They are also what the fragment cache holds, so a cached
//! section is as small as what it serves. The consumer contracts
//! (`contracts/pacts/bff-mobile-*.json`) pin the same fields.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's profile, as the dashboard reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) id: Uuid,
    pub(crate) display_name: String,
    pub(crate) avatar_url: String,
    pub(crate) preferences: Preferences,
}

/// App settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Preferences {
    pub(crate) language: String,
    pub(crate) currency: String,
    pub(crate) theme: String,
    pub(crate) notifications: Notifications,
}

/// Of the notification settings, the push channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Notifications {
    pub(crate) push: bool,
}

/// A page of a user's latest orders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderPage {
    pub(crate) orders: Vec<Order>,
}

/// An order, as one line of the dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) id: Uuid,
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) currency: String,
    pub(crate) total_minor: u64,
    pub(crate) items: Vec<OrderItem>,
}

/// Of an order line, its image and quantity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderItem {
    pub(crate) image_url: String,
    pub(crate) quantity: u32,
}

/// A user's recommendations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecommendationList {
    pub(crate) recommendations: Vec<Recommendation>,
}

/// A recommended product, as a tile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recommendation {
    pub(crate) product_id: Uuid,
    pub(crate) name: String,
    pub(crate) image_url: String,
    pub(crate) price_minor: u64,
    pub(crate) currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_clients::models;

    /// The demo world's documents decode as the shared models and as these
    /// views alike, and the views keep the same values.
    #[test]
    fn views_read_the_same_values_as_the_shared_models() {
        let data = demo_services::DemoData::generate(demo_services::data::DEFAULT_SEED);
        let user = &data.users()[0];
        let json = serde_json::to_vec(user).expect("user");
        let full: models::User = serde_json::from_slice(&json).expect("model");
        let view: Profile = serde_json::from_slice(&json).expect("view");
        assert_eq!(view.id, full.id);
        assert_eq!(view.display_name, full.display_name);
        assert_eq!(view.avatar_url, full.avatar_url);
        assert_eq!(view.preferences.theme, full.preferences.theme);
        assert_eq!(
            view.preferences.notifications.push,
            full.preferences.notifications.push
        );
    }
}
