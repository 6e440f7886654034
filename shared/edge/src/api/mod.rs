//! The stack of the authenticated API routes: one concern per step, so a
//! concern that only authenticated routes need is one file here (a
//! [`Step`]: what it does with a request, given the rest of the stack) and
//! one `.then(…)` line in [`protect`].
//!
//! From the outside in (the order ARCHITECTURE.md names):
//!
//! 1. [`admission`]: a place among the API requests in flight, within the
//!    routes' class, or 503 with `Retry-After` after a short wait;
//! 2. [`anonymous`]: a client address over its `anonymous` quota is
//!    refused before its token is looked at, and a failed authentication
//!    costs it one request of that quota;
//! 3. [`authenticate`]: the bearer token is verified and its claims put in
//!    the request, or the answer is 401;
//! 4. [`caller_limit`]: the request is charged to its caller's tier (one
//!    request, or its declared cost);
//! 5. [`cache_headers`]: `Cache-Control` from what the sections served, and
//!    `Preference-Applied: handling=strict` when the client asked for it;
//! 6. the layer the BFF gave [`crate::EdgeBuilder::authenticated_with`], if
//!    any, and the handler.
//!
//! Why one `route_layer` rather than one per concern: axum boxes a
//! route's service once per `route_layer` call, and each box is cloned on
//! every request. Why steps rather than a tower `Layer` and `Service` per
//! concern: a concern that waits before passing the request on (admission,
//! authentication, the caller's quota) must own the rest of the stack in
//! its future, and a tower service gets it by cloning its inner service, so
//! five such layers clone the route (an allocation each) and the layers
//! below them five times per request (under callgrind, 0.13% more
//! instructions per mobile dashboard than the fused service this replaced;
//! steps: 0.06%). Steps are run in order by [`StackService`], which clones
//! the route once;
//! each step is given the rest as a single-use [`Next`]. Together the steps
//! are one tower `Layer` ([`StackLayer`]), given to axum once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use bff_auth::Authenticator;
use tower::{Layer, Service, ServiceBuilder};

use crate::admission::AdmissionClass;
use crate::ratelimit::Limits;

pub(crate) mod admission;
pub(crate) mod anonymous;
pub(crate) mod authenticate;
pub(crate) mod cache_headers;
pub(crate) mod caller_limit;

/// The future of every step here: the response, never an error (a refusal
/// is a response).
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// What the layers of the stack are made from, built once per app and
/// shared by every authenticated route (one limit on requests in flight,
/// one set of blocked addresses).
#[derive(Debug, Clone)]
pub(crate) struct Pieces {
    /// The limit on API requests in flight; `None` when off.
    pub(crate) limiter: Option<Arc<bff_limit::Limiter>>,
    /// How long a request may wait for a place (`BFF_ADMISSION_QUEUE`).
    pub(crate) queue: Duration,
    /// The rate limits; `None` when off.
    pub(crate) limits: Option<Arc<Limits>>,
    /// The token verifier.
    pub(crate) auth: Arc<Authenticator>,
    /// What a request costs, where the BFF declares it (else one request).
    pub(crate) cost: Option<bff_ratelimit::Cost>,
}

/// `routes` behind the API stack, admitted in `class`, with `innermost`
/// between the stack and the handlers.
pub(crate) fn protect<L>(
    routes: Router,
    pieces: &Pieces,
    class: AdmissionClass,
    innermost: L,
) -> Router
where
    L: Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    let steps = admission::Admission::new(pieces.limiter.as_ref(), class, pieces.queue)
        .then(anonymous::AnonymousLimit(pieces.limits.clone()))
        .then(authenticate::Authenticate(pieces.auth.clone()))
        .then(caller_limit::CallerLimit(
            pieces.limits.clone(),
            pieces.cost,
        ))
        .then(cache_headers::CacheHeaders);
    routes.route_layer(
        ServiceBuilder::new()
            .layer(StackLayer(steps))
            .layer(innermost),
    )
}

/// One concern of the stack: what it does with a request, given the rest
/// of the stack to pass it on to (at most once).
pub(crate) trait Step: Clone + Send + Sync + 'static {
    /// Answers `request`, refusing it or passing it to `next`.
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture;
}

/// The rest of the stack for one request: the steps after the current one,
/// then the route. Used once.
pub(crate) trait Next: Send + 'static {
    /// Passes `request` on.
    fn run(self, request: Request) -> ResponseFuture;
}

/// Steps run in order, outermost first: `a.then(b)` runs `a`, whose next is
/// `b`, whose next is the rest.
pub(crate) trait Steps: Clone + Send + Sync + 'static {
    /// Runs the steps on `request`, then `next`.
    fn run<N: Next>(&self, next: N, request: Request) -> ResponseFuture;

    /// These steps, then `step`.
    fn then<T: Step>(self, step: T) -> Then<Self, T>
    where
        Self: Sized,
    {
        Then(self, step)
    }
}

impl<T: Step> Steps for T {
    fn run<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        self.call(next, request)
    }
}

/// `A`, then `B`.
#[derive(Debug, Clone)]
pub(crate) struct Then<A, B>(A, B);

impl<A: Steps, B: Steps> Steps for Then<A, B> {
    fn run<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        self.0.run(
            Chain {
                steps: self.1.clone(),
                next,
            },
            request,
        )
    }
}

/// The steps after the current one, then what comes after them.
struct Chain<T, N> {
    steps: T,
    next: N,
}

impl<T: Steps, N: Next> Next for Chain<T, N> {
    fn run(self, request: Request) -> ResponseFuture {
        self.steps.run(self.next, request)
    }
}

/// The end of the stack: the (ready) route.
struct Route<S>(S);

impl<S> Next for Route<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    fn run(mut self, request: Request) -> ResponseFuture {
        Box::pin(self.0.call(request))
    }
}

/// The steps as one tower layer.
#[derive(Debug, Clone)]
pub(crate) struct StackLayer<T>(pub(crate) T);

impl<T: Clone, S> Layer<S> for StackLayer<T> {
    type Service = StackService<T, S>;

    fn layer(&self, inner: S) -> Self::Service {
        StackService {
            steps: self.0.clone(),
            inner,
        }
    }
}

/// The steps over the route.
#[derive(Debug, Clone)]
pub(crate) struct StackService<T, S> {
    steps: T,
    inner: S,
}

impl<T, S> Service<Request> for StackService<T, S>
where
    T: Steps,
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
        // its clone). The only clone of the route per request.
        let clone = self.inner.clone();
        let route = std::mem::replace(&mut self.inner, clone);
        self.steps.run(Route(route), request)
    }
}
