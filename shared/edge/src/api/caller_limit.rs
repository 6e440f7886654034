//! The per-caller limit, inside authentication: every request is counted
//! against its caller's tier and subject (a partner's client id included);
//! over the quota the answer is 429 with `Retry-After`, and an answered
//! request carries the `RateLimit-Policy` and `RateLimit` fields.

use std::sync::Arc;

use axum::extract::Request;
use bff_auth::Claims;

use super::{Next, ResponseFuture, Step};
use crate::ratelimit::{Limits, with_fields};

/// Counts requests per caller; `None` (rate limits off) lets every request
/// through.
#[derive(Debug, Clone)]
pub(crate) struct CallerLimit(pub(crate) Option<Arc<Limits>>);

impl Step for CallerLimit {
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        let Some(limits) = self.0.clone() else {
            return next.run(request);
        };
        Box::pin(async move {
            let decision = match limits
                .per_caller(request.extensions().get::<Claims>())
                .await
            {
                Ok(decision) => decision,
                Err(refused) => return Ok(refused),
            };
            let response = next.run(request).await?;
            Ok(with_fields(response, decision.as_ref()))
        })
    }
}
