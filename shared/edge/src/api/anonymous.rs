//! The anonymous limit, around authentication: a client address over its
//! `anonymous` quota is refused (429) before its token is looked at, and a
//! request that fails authentication (401) costs its address one request
//! of that quota, so guessing tokens is limited too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};

use super::{Next, ResponseFuture, Step};
use crate::client_address::ClientAddress;
use crate::ratelimit::Limits;

/// Counts failed authentications per client address; `None` (rate limits
/// off) lets every request through.
#[derive(Debug, Clone)]
pub(crate) struct AnonymousLimit(pub(crate) Option<Arc<Limits>>);

impl Step for AnonymousLimit {
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        // The client's address as the edge resolved it (across trusted
        // proxies only), else the peer's.
        let peer = request
            .extensions()
            .get::<ClientAddress>()
            .map(|c| c.0)
            .or_else(|| {
                request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            });
        let (Some(limits), Some(ip)) = (self.0.clone(), peer) else {
            return next.run(request);
        };
        Box::pin(async move {
            if let Err(refused) = limits.anonymous_before(ip) {
                return Ok(*refused);
            }
            let response = next.run(request).await?;
            Ok(limits.anonymous_after(ip, response).await)
        })
    }
}
