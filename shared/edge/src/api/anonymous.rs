//! The anonymous limit, around authentication: a client address over its
//! `anonymous` quota is refused (429) before its token is looked at, and a
//! request that fails authentication (401) costs its address one request
//! of that quota, so guessing tokens is limited too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use tower::{Layer, Service};

use super::{ResponseFuture, take_ready};
use crate::ratelimit::Limits;

/// Counts failed authentications per client address.
#[derive(Debug, Clone)]
pub(crate) struct AnonymousLimitLayer {
    limits: Option<Arc<Limits>>,
}

impl AnonymousLimitLayer {
    /// `None` (rate limits off) lets every request through.
    pub(crate) fn new(limits: Option<Arc<Limits>>) -> Self {
        AnonymousLimitLayer { limits }
    }
}

impl<S> Layer<S> for AnonymousLimitLayer {
    type Service = AnonymousLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnonymousLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service of [`AnonymousLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AnonymousLimit<S> {
    inner: S,
    limits: Option<Arc<Limits>>,
}

impl<S> Service<Request> for AnonymousLimit<S>
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
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (Some(limits), Some(ip)) = (self.limits.clone(), peer) else {
            return Box::pin(inner.call(request));
        };
        Box::pin(async move {
            if let Err(refused) = limits.anonymous_before(ip) {
                return Ok(*refused);
            }
            let response = inner.call(request).await?;
            Ok(limits.anonymous_after(ip, response).await)
        })
    }
}
