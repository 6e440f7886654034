//! A layer for the authenticated routes only, added the way ARCHITECTURE.md
//! shows (one file with the layer, one line giving it to
//! `EdgeBuilder::authenticated_with`): it runs after the token is verified
//! and sees its claims, it runs for the requests the API stack lets
//! through and for no other, and the stack's own headers are still set.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use bff_auth::Claims;
use bff_edge::{EdgeBuilder, Shared};
use http::HeaderValue;
use tower::{Layer, Service};

/// The header the witness sets: the subject of the claims it found.
const WITNESS: &str = "x-witness";

/// A layer that counts the requests it sees and names each one's subject
/// on the response: the kind of concern (a tenant check, an audit line)
/// that only makes sense once the caller is known.
#[derive(Clone, Default)]
struct WitnessLayer {
    seen: Arc<AtomicUsize>,
}

impl<S> Layer<S> for WitnessLayer {
    type Service = Witness<S>;

    fn layer(&self, inner: S) -> Witness<S> {
        Witness {
            inner,
            seen: self.seen.clone(),
        }
    }
}

#[derive(Clone)]
struct Witness<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S> Service<Request> for Witness<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let subject = request
            .extensions()
            .get::<Claims>()
            .map_or_else(|| "(no claims)".to_owned(), |c| c.sub.clone());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            if let Ok(value) = HeaderValue::from_str(&subject) {
                response.headers_mut().insert(WITNESS, value);
            }
            Ok(response)
        })
    }
}

#[tokio::test]
async fn a_layer_given_to_authenticated_with_runs_after_authentication_and_only_there() {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config(&stack, testkit::EDGE_SPEC);
    let shared = Shared::new(config).expect("shared");
    let witness = WitnessLayer::default();
    let routes = Router::new().route(
        "/whoami",
        get(|claims: Claims| async move { claims.sub.clone() }),
    );
    let app = EdgeBuilder::new(shared)
        .authenticated_with(routes, witness.clone())
        .build();
    let server = testkit::serve_bff(app).await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let client = reqwest::Client::new();
    // Serving the app asked for /readyz until ready: not the witness's.
    assert_eq!(witness.seen.load(Ordering::SeqCst), 0);

    let served = client
        .get(server.url("/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("served");
    assert_eq!(served.status(), 200);
    assert!(
        served.headers().contains_key("ratelimit"),
        "the stack's per-caller limit still answers: {:?}",
        served.headers()
    );
    let named = served
        .headers()
        .get(WITNESS)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let subject = served.text().await.expect("body");
    assert!(!subject.is_empty());
    assert_eq!(
        named.as_deref(),
        Some(subject.as_str()),
        "the layer saw the verified claims"
    );
    assert_eq!(witness.seen.load(Ordering::SeqCst), 1);

    for refused in [
        client.get(server.url("/whoami")).send(),
        client
            .get(server.url("/whoami"))
            .bearer_auth("not.a.token")
            .send(),
    ] {
        let refused = refused.await.expect("refused");
        assert_eq!(refused.status(), 401);
        assert!(!refused.headers().contains_key(WITNESS));
    }
    let probe = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 200);
    assert!(!probe.headers().contains_key(WITNESS));
    assert_eq!(
        witness.seen.load(Ordering::SeqCst),
        1,
        "refused requests and probes never reach a layer of the authenticated routes"
    );
}
