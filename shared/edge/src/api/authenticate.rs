//! Authentication: the bearer token is verified
//! ([`bff_auth::authenticate`]) and its [`bff_auth::Claims`] put in the
//! request for the layers inside and the handler; a missing or invalid
//! token is answered 401 with the RFC 6750 challenge.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bff_auth::Authenticator;
use tower::{Layer, Service};

use super::{ResponseFuture, take_ready};

/// Verifies the bearer token.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticateLayer {
    auth: Arc<Authenticator>,
}

impl AuthenticateLayer {
    pub(crate) fn new(auth: Arc<Authenticator>) -> Self {
        AuthenticateLayer { auth }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`AuthenticateLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Service<Request> for Authenticate<S>
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

    fn call(&mut self, mut request: Request) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let auth = self.auth.clone();
        Box::pin(async move {
            match bff_auth::authenticate(&auth, &mut request).await {
                Ok(()) => inner.call(request).await,
                Err(refused) => Ok(refused.into_response()),
            }
        })
    }
}
