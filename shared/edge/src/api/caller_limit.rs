//! The per-caller limit, inside authentication: every request is charged
//! to its caller's tier and subject (a partner's client id included), one
//! request or, where the BFF declares a [`Cost`], its cost in the BFF's
//! unit; over the quota the answer is 429 with `Retry-After`, and an
//! answered request carries the `RateLimit-Policy` and `RateLimit` fields
//! (and `Request-Cost`).

use std::sync::Arc;

use axum::extract::Request;
use bff_auth::Claims;
use bff_ratelimit::Cost;

use super::{Next, ResponseFuture, Step};
use crate::ratelimit::{Limits, cost_of, with_fields};

/// Charges requests per caller (their declared cost, else one each);
/// `None` (rate limits off) lets every request through.
#[derive(Debug, Clone)]
pub(crate) struct CallerLimit(pub(crate) Option<Arc<Limits>>, pub(crate) Option<Cost>);

impl Step for CallerLimit {
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        let Some(limits) = self.0.clone() else {
            return next.run(request);
        };
        let (request, cost, unit) = cost_of(self.1.as_ref(), request);
        Box::pin(async move {
            let decision = match limits
                .per_caller(request.extensions().get::<Claims>(), cost, unit)
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
