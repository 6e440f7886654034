//! The per-caller limit, inside authentication: every request is counted
//! against its caller's tier and subject (a partner's client id included);
//! over the quota the answer is 429 with `Retry-After`, and an answered
//! request carries the `RateLimit-Policy` and `RateLimit` fields.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use bff_auth::Claims;
use tower::{Layer, Service};

use super::{ResponseFuture, take_ready};
use crate::ratelimit::{Limits, with_fields};

/// Counts requests per caller.
#[derive(Debug, Clone)]
pub(crate) struct CallerLimitLayer {
    limits: Option<Arc<Limits>>,
}

impl CallerLimitLayer {
    /// `None` (rate limits off) lets every request through.
    pub(crate) fn new(limits: Option<Arc<Limits>>) -> Self {
        CallerLimitLayer { limits }
    }
}

impl<S> Layer<S> for CallerLimitLayer {
    type Service = CallerLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service of [`CallerLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CallerLimit<S> {
    inner: S,
    limits: Option<Arc<Limits>>,
}

impl<S> Service<Request> for CallerLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let Some(limits) = self.limits.clone() else {
            return Box::pin(inner.call(request));
        };
        Box::pin(async move {
            let decision = match limits
                .per_caller(request.extensions().get::<Claims>())
                .await
            {
                Ok(decision) => decision,
                Err(refused) => return Ok(refused),
            };
            let response = inner.call(request).await?;
            Ok(with_fields(response, decision.as_ref()))
        })
    }
}
