//! What the mobile app's dashboard caches, for how long, and why.
//!
//! A phone comes back to the app many times a day, often on a poor network:
//! it should get an answer at once. So every section is cached per user and
//! generously: served fresh for a while, then served at once while one
//! background refresh runs (the revalidate window), then kept for a day to
//! stand in when a service fails. The numbers, and the reason for each, are
//! in the README's cache table; `BFF_CACHE_{KIND}_FRESH`, `_REVALIDATE` and
//! `_STALE` override them per deployment.
//!
//! Every fragment here holds one user's data: its key is that user's id
//! (from the token), and a dashboard built from it is cached only privately.

use std::time::Duration;

use bff_cache::fragment::Fragment;
use bff_cache::tiered::FragmentPolicy;
use uuid::Uuid;

use crate::sources::{OrderPage, Profile, RecommendationList};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The user's profile, as the dashboard reads it: changes rarely (a new
/// avatar, a language), so five minutes fresh and an hour of revalidation.
pub(crate) const PROFILE: Fragment<Uuid, Profile> = Fragment::per_user("user", 1)
    .fresh_for(Duration::from_secs(5 * 60))
    .revalidate_for(HOUR)
    .stale_for(DAY)
    .approx_bytes(1024);

/// The user's latest orders (user, how many): an order placed or shipped
/// should show soon, so 30 s fresh; a returning app still gets its list at
/// once for a quarter of an hour while it refreshes.
pub(crate) const ORDERS: Fragment<(Uuid, u32), OrderPage> = Fragment::per_user("orders", 1)
    .fresh_for(Duration::from_secs(30))
    .revalidate_for(Duration::from_secs(15 * 60))
    .stale_for(DAY)
    .approx_bytes(4 * 1024);

/// The user's recommendations (user, how many): computed in batches by the
/// recommendation service, so ten minutes fresh and an hour of revalidation.
pub(crate) const RECOMMENDATIONS: Fragment<(Uuid, u32), RecommendationList> =
    Fragment::per_user("recommendations", 1)
        .fresh_for(Duration::from_secs(10 * 60))
        .revalidate_for(HOUR)
        .stale_for(DAY)
        .approx_bytes(2 * 1024);

/// Every kind above, for the spec (configuration overrides, metrics).
pub(crate) const POLICIES: [FragmentPolicy; 3] =
    [PROFILE.policy(), ORDERS.policy(), RECOMMENDATIONS.policy()];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fragment_is_per_user_and_served_fresh_then_revalidated() {
        for policy in POLICIES {
            assert!(policy.per_user, "{}: a user's data", policy.kind);
            assert!(
                policy.fresh_for >= Duration::from_secs(30),
                "{}",
                policy.kind
            );
            assert!(
                policy.revalidate_for >= Duration::from_secs(600),
                "{}",
                policy.kind
            );
            assert!(policy.stale_for >= HOUR, "{}", policy.kind);
        }
    }
}
