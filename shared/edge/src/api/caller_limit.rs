//! The per-caller limit, inside authentication: every request is counted
//! against its caller's tier and subject (a partner's client id included);
//! over the quota the answer is 429 with `Retry-After`, and an answered
//! request carries the `RateLimit-Policy` and `RateLimit` fields.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bff_auth::Claims;
use tower::Service;

use super::{ResponseFuture, Step};
use crate::ratelimit::{Limits, with_fields};

/// Counts requests per caller; `None` (rate limits off) lets every request
/// through.
#[derive(Debug, Clone)]
pub(crate) struct CallerLimit(pub(crate) Option<Arc<Limits>>);

impl Step for CallerLimit {
    fn call<S>(&self, mut next: S, request: Request) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        let Some(limits) = self.0.clone() else {
            return Box::pin(next.call(request));
        };
        Box::pin(async move {
            let decision = match limits
                .per_caller(request.extensions().get::<Claims>())
                .await
            {
                Ok(decision) => decision,
                Err(refused) => return Ok(refused),
            };
            let response = next.call(request).await?;
            Ok(with_fields(response, decision.as_ref()))
        })
    }
}
