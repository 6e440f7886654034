//! The [`Aggregate`] extractor and the client's degradation preference.
//!
//! Handlers declare sections and shape data; the plumbing of an aggregation
//! (the configured deadlines, the fragment cache, the matched route as the
//! metrics label, and whether the client asked for `Prefer:
//! handling=strict`) is taken here, once, from the request; and the
//! response's `Cache-Control` is set here from what its sections served
//! ([`bff_aggregate::Reuse`]): `private` when any of them is per-user data,
//! `max-age` the shortest freshness left, `no-store` on a partial answer.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use bff_aggregate::{Aggregation, ReuseHandle};
use bff_problem::ApiError;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::shared::Shared;

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

/// An [`Aggregation`] set up for the current request.
#[derive(Debug)]
pub struct Aggregate(pub Aggregation);

impl Deref for Aggregate {
    type Target = Aggregation;
    fn deref(&self) -> &Aggregation {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Aggregate {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(shared) = parts.extensions.get::<Shared>() else {
            tracing::error!("Aggregate used on a route outside EdgeBuilder::authenticated");
            return Err(ApiError::internal());
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let traced = parts
            .extensions
            .get::<crate::context::RequestContext>()
            .is_none_or(|ctx| ctx.trace.is_sampled());
        let aggregation =
            Aggregation::new(shared.fragments().clone(), shared.config().deadlines, route)
                .strict(prefers_strict(&parts.headers))
                .traced(traced);
        if let Some(slot) = parts.extensions.get::<ReuseSlot>() {
            *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(aggregation.reuse_handle());
        }
        Ok(Aggregate(aggregation))
    }
}

/// Where the request's aggregation leaves its [`ReuseHandle`] for
/// [`api_context`] to read once the handler is done.
#[derive(Clone, Default)]
struct ReuseSlot(Arc<Mutex<Option<ReuseHandle>>>);

/// Middleware of the API routes: makes [`Shared`] reachable for
/// [`Aggregate`], and says `Preference-Applied: handling=strict` when the
/// client asked for it (every API route honours it).
pub(crate) async fn api_context(
    shared: axum::extract::State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let strict = prefers_strict(request.headers());
    let slot = ReuseSlot::default();
    request.extensions_mut().insert(shared.0);
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let status = response.status();
    if (status.is_success() || status == StatusCode::NOT_MODIFIED)
        && !response.headers().contains_key(header::CACHE_CONTROL)
        && let Some(reuse) = slot
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(ReuseHandle::reuse)
        && let Ok(value) = HeaderValue::from_str(&reuse.header_value())
    {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    if strict {
        response.headers_mut().insert(
            PREFERENCE_APPLIED,
            HeaderValue::from_static("handling=strict"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
