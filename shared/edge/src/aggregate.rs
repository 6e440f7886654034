//! The [`Aggregate`] extractor and the client's degradation preference.
//!
//! Handlers declare sections and shape data; the plumbing of an aggregation
//! (the configured deadlines and the fragment cache from the app's state,
//! the matched route as the metrics label, and whether the client asked
//! for `Prefer: handling=strict`) is taken here, once, from the request.
//! What its sections served ([`bff_aggregate::Reuse`]) is left in the
//! request's [`ReuseSlot`], from which the API stack sets the response's
//! `Cache-Control`.

use std::convert::Infallible;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use bff_aggregate::{Aggregation, Deadlines, Reuse, ReuseHandle};
use bff_cache::tiered::FragmentStore;
use http::HeaderMap;
use http::request::Parts;
use parking_lot::Mutex;

/// The `Prefer` header (RFC 7240).
pub const PREFER: &str = "prefer";
/// The `Preference-Applied` header (RFC 7240).
pub const PREFERENCE_APPLIED: &str = "preference-applied";

/// Whether the request prefers `handling=strict` (RFC 7240 §4.4): a
/// failure rather than a partial answer. Preferences are comma-separated,
/// parameters after `;` are ignored, the value may be quoted, and names are
/// case-insensitive.
pub fn prefers_strict(headers: &HeaderMap) -> bool {
    headers
        .get_all(PREFER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| pref.split(';').next())
        .filter_map(|pref| pref.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("handling")
                && value
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("strict")
        })
}

/// What the [`Aggregate`] extractor takes from the app's state (by axum's
/// `FromRef`): the fragment cache and the configured deadlines. A BFF puts
/// the one [`crate::Shared::aggregate_state`] gives it in its router's
/// state; a handler that extracts [`Aggregate`] on a router whose state
/// lacks it does not compile.
#[derive(Debug, Clone)]
pub struct AggregateState {
    fragments: FragmentStore,
    deadlines: Deadlines,
}

impl AggregateState {
    /// The state over `fragments`, with sections held to `deadlines`.
    pub fn new(fragments: FragmentStore, deadlines: Deadlines) -> Self {
        AggregateState {
            fragments,
            deadlines,
        }
    }
}

/// An [`Aggregation`] set up for the current request.
#[derive(Debug)]
pub struct Aggregate(pub Aggregation);

impl Deref for Aggregate {
    type Target = Aggregation;
    fn deref(&self) -> &Aggregation {
        &self.0
    }
}

impl<S> FromRequestParts<S> for Aggregate
where
    S: Send + Sync,
    AggregateState: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let AggregateState {
            fragments,
            deadlines,
        } = AggregateState::from_ref(state);
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let traced = parts
            .extensions
            .get::<crate::context::RequestContext>()
            .is_none_or(|ctx| ctx.trace.is_sampled());
        let aggregation = Aggregation::new(fragments, deadlines, route)
            .strict(prefers_strict(&parts.headers))
            .traced(traced);
        // Outside the API stack (no slot) the response keeps the handler's
        // cache headers only.
        if let Some(slot) = parts.extensions.get::<ReuseSlot>() {
            slot.fill(aggregation.reuse_handle());
        }
        Ok(Aggregate(aggregation))
    }
}

/// Where the request's aggregation leaves its [`ReuseHandle`] for the
/// cache headers (and the ETag layer) to read once the handler is done (in
/// the request's extensions on the authenticated API routes).
#[derive(Clone, Default)]
pub struct ReuseSlot(Arc<Mutex<Option<ReuseHandle>>>);

impl std::fmt::Debug for ReuseSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReuseSlot").finish_non_exhaustive()
    }
}

impl ReuseSlot {
    /// Whether the sections that ran say how the response may be reused
    /// (the edge then sets its `Cache-Control` from them).
    pub fn decided(&self) -> bool {
        self.reuse().is_some()
    }

    /// Keeps the handle of the request's aggregation.
    fn fill(&self, handle: ReuseHandle) {
        *self.0.lock() = Some(handle);
    }

    pub(crate) fn reuse(&self) -> Option<Reuse> {
        self.0.lock().as_ref().and_then(ReuseHandle::reuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn prefer(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(PREFER, HeaderValue::from_str(v).expect("header"));
        }
        prefers_strict(&headers)
    }

    #[test]
    fn reads_rfc7240_preferences() {
        assert!(prefer(&["handling=strict"]));
        assert!(prefer(&["respond-async, Handling=\"STRICT\"; x=1"]));
        assert!(prefer(&["wait=5", "handling=strict"]));
        assert!(!prefer(&["handling=lenient"]));
        assert!(!prefer(&["strict"]));
        assert!(!prefer(&[]));
    }
}
