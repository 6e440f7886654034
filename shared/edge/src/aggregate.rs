//! The [`Aggregate`] extractor and the client's degradation preference.
//!
//! Handlers declare sections and shape data; the plumbing of an aggregation
//! (the configured deadlines, the fragment cache, the matched route as the
//! metrics label, and whether the client asked for `Prefer:
//! handling=strict`) is taken here, once, from the request; and the
//! response's `Cache-Control` is set here from what its sections served
//! ([`bff_aggregate::Reuse`]): `private` when any of them is per-user data,
//! `max-age` the shortest freshness left, `no-store` on a partial answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use bff_aggregate::{Aggregation, ReuseHandle};
use bff_auth::Claims;
use bff_problem::ApiError;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::in_flight::{GaveUp, InFlight};
use crate::ratelimit;
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
/// [`ApiLayer`] to read once the handler is done (in the request's
/// extensions on the authenticated API routes).
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
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(ReuseHandle::reuse)
            .is_some()
    }
}

/// Layer of the authenticated API routes, in one step per request so the
/// route is wrapped once (every layer on an axum route is one more boxed
/// service, and each of those is cloned, with every boxed service inside
/// it, on every request). From the outside in:
///
/// 0. waits for a place among the API requests in flight
///    ([`crate::BffConfig::max_in_flight`], sized to the load by
///    [`crate::in_flight`]; one bound for every API route, waiters served in
///    arrival order) before any work is done, for at most the request
///    deadline (`BFF_DEADLINE_REQUEST`), after which it answers 503 with
///    `Retry-After`;
/// 1. makes [`Shared`] reachable for [`Aggregate`], and on the way out sets
///    `Cache-Control` from what the sections served and says
///    `Preference-Applied: handling=strict` when the client asked for it
///    (every API route honours it);
/// 2. refuses a client address over its `anonymous` quota, and counts a
///    failed authentication against it ([`crate::ratelimit`]);
/// 3. verifies the bearer token ([`bff_auth::authenticate`]);
/// 4. counts the request against its caller's quota.
#[derive(Debug, Clone)]
pub(crate) struct ApiLayer {
    shared: Shared,
    in_flight: Option<Arc<InFlight>>,
}

impl ApiLayer {
    /// `in_flight` is shared by every route the layer is applied to.
    pub(crate) fn new(shared: Shared, in_flight: Option<Arc<InFlight>>) -> Self {
        ApiLayer { shared, in_flight }
    }
}

impl<S> tower::Layer<S> for ApiLayer {
    type Service = ApiService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiService {
            inner,
            shared: self.shared.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The service of [`ApiLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ApiService<S> {
    inner: S,
    shared: Shared,
    in_flight: Option<Arc<InFlight>>,
}

impl<S> tower::Service<Request> for ApiService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The ready service goes with the request; a clone stays for the
        // next one (tower's convention).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            let _place = match &in_flight {
                Some(bound) => match bound.enter(shared.config().deadlines.request).await {
                    Ok(place) => Some(place),
                    Err(gave_up) => return Ok(overloaded(gave_up)),
                },
                None => None,
            };
            let strict = prefers_strict(request.headers());
            let slot = ReuseSlot::default();
            request.extensions_mut().insert(shared.clone());
            request.extensions_mut().insert(slot.clone());
            let response = guarded(&shared, request, inner).await;
            Ok(finish(response, &slot, strict))
        })
    }
}

/// The answer to a request that waited the whole request deadline for a
/// place among those in flight: the replica is past what its CPU or its
/// upstreams get through, and working on a request this late would only
/// answer a client that has given up while the queue behind it grows.
fn overloaded(gave_up: GaveUp) -> Response {
    tracing::debug!(
        waited_ms = gave_up.0.as_millis(),
        "request refused: no place among the requests in flight within the request deadline"
    );
    ApiError::unavailable(
        format!(
            "the server is at its bound on requests in flight and this request could not start within {} ms",
            gave_up.0.as_millis()
        ),
        1,
    )
    .into_response()
}

/// Steps 2 to 4 of [`ApiLayer`], and the handler.
async fn guarded<S>(shared: &Shared, mut request: Request, mut inner: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    let ip = match ratelimit::anonymous_before(shared, peer) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    let response = match bff_auth::authenticate(shared.auth(), &mut request).await {
        Err(refused) => refused.into_response(),
        Ok(()) => match ratelimit::per_caller(shared, request.extensions().get::<Claims>()).await {
            Err(refused) => refused,
            Ok(decision) => {
                let response = match inner.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                ratelimit::with_fields(response, decision.as_ref())
            }
        },
    };
    match ip {
        Some(ip) => ratelimit::anonymous_after(shared, ip, response).await,
        None => response,
    }
}

/// Step 1 of [`ApiLayer`] on the way out.
fn finish(mut response: Response, slot: &ReuseSlot, strict: bool) -> Response {
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
