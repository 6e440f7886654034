//! Authentication: the bearer token is verified
//! ([`bff_auth::authenticate`]) and its [`bff_auth::Claims`] put in the
//! request for the layers inside and the handler; a missing or invalid
//! token is answered 401 with the RFC 6750 challenge.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::IntoResponse;
use bff_auth::Authenticator;

use super::{Next, ResponseFuture, Step};

/// Verifies the bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate(pub(crate) Arc<Authenticator>);

impl Step for Authenticate {
    fn call<N: Next>(&self, next: N, mut request: Request) -> ResponseFuture {
        let auth = self.0.clone();
        Box::pin(async move {
            match bff_auth::authenticate(&auth, &mut request).await {
                Ok(()) => next.run(request).await,
                Err(refused) => Ok(refused.into_response()),
            }
        })
    }
}
