//! The stack of the authenticated API routes: one concern per layer, so a
//! concern that only authenticated routes need is one file here (a
//! [`Step`]: what it does with a request, given the rest of the stack) and
//! one `.layer(StepLayer(…))` line in [`protect`].
//!
//! From the outside in (the order ARCHITECTURE.md names):
//!
//! 1. [`admission`]: a place among the API requests in flight, or 503 with
//!    `Retry-After` once the request deadline has passed waiting for one;
//! 2. [`anonymous`]: a client address over its `anonymous` quota is
//!    refused before its token is looked at, and a failed authentication
//!    costs it one request of that quota;
//! 3. [`authenticate`]: the bearer token is verified and its claims put in
//!    the request, or the answer is 401;
//! 4. [`caller_limit`]: the request is counted against its caller's tier;
//! 5. [`cache_headers`]: `Cache-Control` from what the sections served, and
//!    `Preference-Applied: handling=strict` when the client asked for it;
//! 6. the layer the BFF gave [`crate::EdgeBuilder::authenticated_with`], if
//!    any, and the handler.
//!
//! Why one `route_layer` of a `ServiceBuilder` rather than one
//! `route_layer` per concern: axum boxes a route's service once per
//! `route_layer` call, and each box is cloned on every request; composed
//! first, the whole stack is one box, and each layer's service is a plain
//! struct around the next. Why a [`Step`] rather than a hand-written
//! `Layer` and `Service` per concern: those two are the same for every
//! concern here (readiness is the next one's, the ready service goes with
//! the request), so they are written once ([`StepLayer`], [`StepService`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::Route;
use bff_auth::Authenticator;
use tower::{Layer, Service, ServiceBuilder};

use crate::in_flight::InFlight;
use crate::ratelimit::Limits;

pub(crate) mod admission;
pub(crate) mod anonymous;
pub(crate) mod authenticate;
pub(crate) mod cache_headers;
pub(crate) mod caller_limit;

/// The future of every layer here: the response, never an error (a refusal
/// is a response).
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// What the layers of the stack are made from, built once per app and
/// shared by every authenticated route (one bound on requests in flight,
/// one set of blocked addresses).
#[derive(Debug, Clone)]
pub(crate) struct Pieces {
    /// The bound on API requests in flight; `None` when off.
    pub(crate) in_flight: Option<Arc<InFlight>>,
    /// How long a request may wait for a place (the request deadline).
    pub(crate) patience: Duration,
    /// The rate limits; `None` when off.
    pub(crate) limits: Option<Arc<Limits>>,
    /// The token verifier.
    pub(crate) auth: Arc<Authenticator>,
}

/// `routes` behind the API stack, with `innermost` between the stack and
/// the handlers.
pub(crate) fn protect<L>(routes: Router, pieces: &Pieces, innermost: L) -> Router
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    routes.route_layer(
        ServiceBuilder::new()
            .layer(StepLayer(admission::Admission::new(
                pieces.in_flight.clone(),
                pieces.patience,
            )))
            .layer(StepLayer(anonymous::AnonymousLimit(pieces.limits.clone())))
            .layer(StepLayer(authenticate::Authenticate(pieces.auth.clone())))
            .layer(StepLayer(caller_limit::CallerLimit(pieces.limits.clone())))
            .layer(StepLayer(cache_headers::CacheHeaders))
            .layer(innermost),
    )
}

/// One concern of the stack: what it does with a request, given the rest
/// of the stack (`next`, ready) to pass it on to. [`StepLayer`] makes it a
/// tower `Layer`, so a concern is only this impl.
pub(crate) trait Step: Clone + Send + Sync + 'static {
    /// Answers `request`, refusing it or passing it to `next`.
    fn call<S>(&self, next: S, request: Request) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send;
}

/// The layer of a [`Step`].
#[derive(Debug, Clone)]
pub(crate) struct StepLayer<P>(pub(crate) P);

impl<P: Clone, S> Layer<S> for StepLayer<P> {
    type Service = StepService<P, S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepService {
            step: self.0.clone(),
            inner,
        }
    }
}

/// The service of a [`Step`] over the rest of the stack.
#[derive(Debug, Clone)]
pub(crate) struct StepService<P, S> {
    step: P,
    inner: S,
}

impl<P, S> Service<Request> for StepService<P, S>
where
    P: Step,
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
        // The ready service goes with the request; a clone stays for the
        // next one (tower's convention: `poll_ready` readied `inner`, not
        // its clone).
        let clone = self.inner.clone();
        let next = std::mem::replace(&mut self.inner, clone);
        self.step.call(next, request)
    }
}
