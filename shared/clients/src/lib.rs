//! Typed clients of the domain services, one per service, each on the shared
//! resilient [`bff_upstream`] policy.
//!
//! The models read only the fields some BFF uses; unknown fields are
//! ignored, so a service may grow without breaking us. They are
//! `Serialize` too, because the fragment cache stores them.

#![warn(missing_docs)]

pub mod models;
mod services;

pub use services::{
    InventoryClient, OrderClient, PricingClient, ProductClient, RecommendationClient, ReviewClient,
    UserClient,
};
