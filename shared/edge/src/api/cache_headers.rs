//! Cache headers, innermost: the request gets a [`ReuseSlot`] where its
//! aggregation leaves what its sections served, and on the way out the
//! response's `Cache-Control` is set from it (`private` when any section is
//! per-user data, `max-age` the shortest freshness left, `no-store` on a
//! partial answer) unless the handler set one;
//! `Preference-Applied: handling=strict` says the client's preference for a
//! failure over a partial answer was honoured (every API route honours it).

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::{Next, ResponseFuture, Step};
use crate::aggregate::{PREFERENCE_APPLIED, ReuseSlot, prefers_strict};

/// Sets the cache headers of the API responses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheHeaders;

impl Step for CacheHeaders {
    fn call<N: Next>(&self, next: N, mut request: Request) -> ResponseFuture {
        let strict = prefers_strict(request.headers());
        let slot = ReuseSlot::default();
        request.extensions_mut().insert(slot.clone());
        Box::pin(async move {
            let response = next.run(request).await?;
            Ok(finish(response, &slot, strict))
        })
    }
}

fn finish(mut response: Response, slot: &ReuseSlot, strict: bool) -> Response {
    let status = response.status();
    if (status.is_success() || status == StatusCode::NOT_MODIFIED)
        && !response.headers().contains_key(header::CACHE_CONTROL)
        && let Some(reuse) = slot.reuse()
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
