//! The request context: request id and trace context, established once per
//! request at the edge and carried to every upstream call.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bff_telemetry::TraceContext;
use bff_upstream::CallContext;
use http::HeaderValue;
use http::request::Parts;
use tracing::Instrument;

use crate::client_address::{ClientAddress, TrustedProxies};
use crate::rescue;

/// The header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The context of the current request (an extractor).
#[derive(Debug, Clone)]
pub struct RequestContext(pub CallContext);

impl Deref for RequestContext {
    type Target = CallContext;
    fn deref(&self) -> &CallContext {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| {
                RequestContext(CallContext {
                    request_id: new_request_id(),
                    trace: TraceContext::from_headers(&parts.headers),
                })
            }))
    }
}

/// A request id a client may choose: 1 to 128 characters of letters, digits
/// and `-_.:`, so it is safe in headers, logs and upstream calls.
pub fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

fn new_request_id() -> HeaderValue {
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// What [`RequestContextLayer`] keeps from the request for its response.
struct Begun {
    started: Instant,
    request_id: HeaderValue,
    trace: TraceContext,
    span: tracing::Span,
}

/// Establishes the request's context: the request id (the client's when
/// valid), the client's address ([`ClientAddress`], believing only
/// `proxies`), its span and trace context, and the [`RequestContext`]
/// extension.
fn begin<B>(
    client: &'static str,
    proxies: &TrustedProxies,
    request: &mut http::Request<B>,
) -> Begun {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| valid_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let method = request.method();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| proxies.client(c.0.ip(), request.headers()));
    // Probes and scrapes (every few seconds, from every replica's
    // orchestrator) are neither traced nor logged.
    let probe = matches!(route, "/healthz" | "/readyz" | "/metrics");
    let span = if probe {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = route,
            url.path = request.uri().path(),
            bff.client = client,
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            // Given when the span is made: a later `record` costs the JSON
            // log format a re-encoding of every field of the span.
            client.address = address.map(tracing::field::display),
            enduser.pseudo.id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        )
    };
    if let Some(address) = address {
        request.extensions_mut().insert(ClientAddress(address));
    }
    let trace = TraceContext::start(request.headers(), &span);
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id());
        span.record("span_id", trace.span_id());
    }
    request.extensions_mut().insert(RequestContext(CallContext {
        request_id: request_id.clone(),
        trace: trace.clone(),
    }));
    Begun {
        started,
        request_id,
        trace,
        span,
    }
}

/// Rescues an error response, records the status in the span, writes the
/// request's log line and echoes the request id.
fn finish(begun: Begun, response: Response) -> Response {
    let Begun {
        started,
        request_id,
        trace,
        span,
    } = begun;
    let mut response = rescue::rescue(response, request_id.to_str().unwrap_or_default(), &trace);
    if !span.is_disabled() {
        let status = response.status().as_u16();
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
        let _entered = span.enter();
        tracing::info!(
            http.response.status_code = status,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// Middleware: establishes the [`RequestContext`] and the
/// [`ClientAddress`] (the peer: no proxy is trusted here), runs the request
/// inside its span (the trace's server span when spans are exported: route,
/// client, client address, pseudonymous subject, status), writes one log line per request
/// at `info` (path without its query, never a header), echoes
/// `x-request-id`, and turns every error response into problem+json with
/// the ids ([`rescue`]). `client` is the BFF's name.
///
/// The same as [`RequestContextLayer`], for `axum::middleware::from_fn`;
/// the layer costs no allocation per request.
pub async fn request_context(
    State(client): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let begun = begin(client, &TrustedProxies::default(), &mut request);
    let span = begun.span.clone();
    let response = next.run(request).instrument(span).await;
    finish(begun, response)
}

/// Layer doing what [`request_context`] does, with a named future, and
/// taking the client's address from the proxies it is told to trust: the
/// outermost layer of every BFF, so it must not box or clone per request.
#[derive(Debug, Clone)]
pub struct RequestContextLayer {
    client: &'static str,
    proxies: Arc<TrustedProxies>,
}

impl RequestContextLayer {
    /// The layer of the BFF named `client`, trusting no proxy.
    pub fn new(client: &'static str) -> Self {
        RequestContextLayer {
            client,
            proxies: Arc::default(),
        }
    }

    /// The same layer, believing what `proxies` say of the client's
    /// address ([`crate::client_address`]).
    #[must_use]
    pub fn trusting(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Arc::new(proxies);
        self
    }
}

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService {
            inner,
            client: self.client,
            proxies: self.proxies.clone(),
        }
    }
}

/// The service of [`RequestContextLayer`].
#[derive(Debug, Clone)]
pub struct RequestContextService<S> {
    inner: S,
    client: &'static str,
    proxies: Arc<TrustedProxies>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RequestContextService<S>
where
    S: tower::Service<http::Request<B>, Response = R>,
    R: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequestContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let begun = begin(self.client, &self.proxies, &mut request);
        // Whatever the services below do when called runs in the span too.
        let inner = {
            let _entered = begun.span.enter();
            self.inner.call(request)
        };
        RequestContextFuture {
            inner: inner.instrument(begun.span.clone()),
            begun: Some(begun),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestContextService`].
    pub struct RequestContextFuture<F> {
        #[pin]
        inner: tracing::instrument::Instrumented<F>,
        begun: Option<Begun>,
    }
}

impl<F, R, E> Future for RequestContextFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?.into_response();
        Poll::Ready(Ok(match this.begun.take() {
            Some(begun) => finish(begun, response),
            // Polled again after it completed: the response passes as is.
            None => response,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        for ok in ["abc", "0af7-651:9.x_y", &"a".repeat(128)] {
            assert!(
                valid_request_id(&HeaderValue::from_str(ok).expect("header")),
                "{ok}"
            );
        }
        for bad in [
            "",
            "has space",
            "semi;colon",
            &"a".repeat(129),
            "quote\"",
            "ünï",
        ] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).expect("header");
            assert!(!valid_request_id(&value), "{bad}");
        }
    }
}
