//! Strong ETags and conditional GETs.
//!
//! Why: a phone polling its dashboard should not download the same bytes
//! again. The tag is a hash of the response body as produced by the handler
//! (before compression), so it changes exactly when the content does.
//!
//! A strong validator names one representation, and a compressed body is
//! another representation than the identity one (RFC 9110 §8.8.3), so
//! [`per_encoding`], outside compression, gives each content coding its own
//! tag (`"…-br"`, `"…-gzip"`); `If-None-Match` compares the tags without
//! that suffix, so a client's tag still gets its 304 whatever the encoding
//! of the next answer, and the 304 repeats the tag the client holds.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::aggregate::ReuseSlot;

/// Bodies larger than this are passed through without a tag.
const MAX_TAGGED_BODY: usize = 4 * 1024 * 1024;

/// The strong ETag of `body`: 128 bits of its SHA-256, quoted.
pub fn strong_etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(24);
    tag.push('"');
    URL_SAFE_NO_PAD.encode_string(&digest[..16], &mut tag);
    tag.push('"');
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The content codings that get their own tag suffix.
const CODINGS: [&[u8]; 2] = [b"br", b"gzip"];

/// The opaque part of an entity tag, without `W/`, quotes, or a content
/// coding suffix.
fn opaque(tag: &[u8]) -> &[u8] {
    let tag = tag.trim_ascii();
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    let tag = tag
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(tag);
    CODINGS
        .iter()
        .find_map(|coding| tag.strip_suffix(*coding).and_then(|t| t.strip_suffix(b"-")))
        .unwrap_or(tag)
}

/// The `If-None-Match` candidate matching `etag`, if any (weak comparison,
/// as RFC 9110 asks for this header, of the tags without a content coding
/// suffix).
fn matching<'a>(headers: &'a HeaderMap, etag: &HeaderValue) -> Option<&'a [u8]> {
    let ours = opaque(etag.as_bytes());
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|candidate| *candidate == b"*" || opaque(candidate) == ours)
}

/// Whether `If-None-Match` matches `etag`.
pub fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    matching(headers, etag).is_some()
}

/// The `If-None-Match` fields of a request, kept for its response; `None`
/// (no allocation) when it has none.
fn conditional(headers: &HeaderMap) -> Option<HeaderMap> {
    headers.get(header::IF_NONE_MATCH).is_some().then(|| {
        let mut h = HeaderMap::new();
        for value in headers.get_all(header::IF_NONE_MATCH) {
            h.append(header::IF_NONE_MATCH, value.clone());
        }
        h
    })
}

/// What [`per_encoding`] does to a response: a compressed 200 gets its
/// coding in its tag, a 304 the tag the client sent.
fn tag_encoding<B>(conditional: Option<&HeaderMap>, response: &mut http::Response<B>) {
    let Some(tag) = response.headers().get(header::ETAG) else {
        return;
    };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    if response.status() == StatusCode::NOT_MODIFIED {
        if let Some(candidate) = conditional
            .and_then(|h| matching(h, tag))
            .filter(|c| *c != b"*")
            .and_then(|c| HeaderValue::from_bytes(c).ok())
        {
            response.headers_mut().insert(header::ETAG, candidate);
        }
        return;
    }
    let coding = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
        .filter(|c| CODINGS.contains(c));
    if let Some(coding) = coding {
        let mut tagged = Vec::with_capacity(tag.len() + 6);
        tagged.extend_from_slice(&tag.as_bytes()[..tag.len().saturating_sub(1)]);
        tagged.push(b'-');
        tagged.extend_from_slice(coding);
        tagged.push(b'"');
        if let Ok(value) = HeaderValue::from_bytes(&tagged) {
            response.headers_mut().insert(header::ETAG, value);
        }
    }
}

/// Middleware outside compression: a compressed 200 gets its coding in
/// its tag (`"…-br"`), and a 304 repeats the tag the client sent.
///
/// The same as [`PerEncodingLayer`], for `axum::middleware::from_fn`.
pub async fn per_encoding(request: Request, next: Next) -> Response {
    let conditional = conditional(request.headers());
    let mut response = next.run(request).await;
    tag_encoding(conditional.as_ref(), &mut response);
    response
}

/// Layer doing what [`per_encoding`] does, with a named future (no
/// allocation per request unless the request is conditional). It goes
/// outside the compression layer, whose `Content-Encoding` it reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerEncodingLayer;

impl<S> tower::Layer<S> for PerEncodingLayer {
    type Service = PerEncoding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerEncoding { inner }
    }
}

/// The service of [`PerEncodingLayer`].
#[derive(Debug, Clone)]
pub struct PerEncoding<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for PerEncoding<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = PerEncodingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        PerEncodingFuture {
            conditional: conditional(request.headers()),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`PerEncoding`].
    pub struct PerEncodingFuture<F> {
        #[pin]
        inner: F,
        conditional: Option<HeaderMap>,
    }
}

impl<F, R, E> Future for PerEncodingFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            tag_encoding(this.conditional.as_ref(), response);
        }
        Poll::Ready(result)
    }
}

/// Middleware: tags every 200 with a strong ETag and answers a matching
/// `If-None-Match` with 304 and no body.
///
/// A handler may set the ETag itself, computed over what identifies its
/// content (leaving out, say, a generation timestamp that would make every
/// response unique); otherwise the tag is the hash of the whole body.
///
/// The same as [`EtagLayer`], for `axum::middleware::from_fn`.
pub async fn etag(request: Request, next: Next) -> Response {
    // Only the validators are needed after the handler ran.
    let conditional = conditional(request.headers());
    let slot = aggregation(&request);
    let response = next.run(request).await;
    match tag_response(conditional.as_ref(), slot.as_ref(), response) {
        Ok(response) => response,
        Err((parts, body)) => tag_body(conditional, parts, body).await,
    }
}

/// Where an authenticated API route's aggregation says how its response
/// may be reused: when its sections decided (how long each cached fragment
/// stays fresh), the edge sets `Cache-Control` from them and this layer
/// leaves it alone.
fn aggregation<B>(request: &http::Request<B>) -> Option<ReuseSlot> {
    request.extensions().get::<ReuseSlot>().cloned()
}

/// Sets `Cache-Control` (unless the sections of `slot` decided it) and
/// answers 304 on a 200 whose handler set its ETag; a 200 without one comes
/// back in parts, to be tagged from its body ([`tag_body`]).
#[allow(clippy::result_large_err)] // the parts are the response, moved on
fn tag_response(
    conditional: Option<&HeaderMap>,
    slot: Option<&ReuseSlot>,
    response: Response,
) -> Result<Response, (http::response::Parts, Body)> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    if !slot.is_some_and(ReuseSlot::decided) && !parts.headers.contains_key(header::CACHE_CONTROL) {
        // Per-user data: caches may keep it but must revalidate each time.
        parts.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    let Some(tag) = parts.headers.get(header::ETAG) else {
        return Err((parts, body));
    };
    if conditional.is_some_and(|c| if_none_match(c, tag)) {
        return Ok(not_modified(parts));
    }
    Ok(Response::from_parts(parts, body))
}

/// Tags a 200 with the hash of its body (read whole, up to
/// [`MAX_TAGGED_BODY`]).
async fn tag_body(
    conditional: Option<HeaderMap>,
    mut parts: http::response::Parts,
    body: Body,
) -> Response {
    let bytes = match to_bytes(body, MAX_TAGGED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "response body could not be read for its ETag");
            return bff_problem::ApiError::internal().into_response();
        }
    };
    let tag = strong_etag(&bytes);
    parts.headers.insert(header::ETAG, tag.clone());
    if conditional.is_some_and(|c| if_none_match(&c, &tag)) {
        return not_modified(parts);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Layer doing what [`etag`] does, with a named future: a response whose
/// handler set its tag costs no allocation here; only one to be tagged
/// from its body boxes the reading of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtagLayer;

impl<S> tower::Layer<S> for EtagLayer {
    type Service = Etag<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Etag { inner }
    }
}

/// The service of [`EtagLayer`].
#[derive(Debug, Clone)]
pub struct Etag<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Etag<S>
where
    S: tower::Service<http::Request<B>>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EtagFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        EtagFuture::Handler {
            conditional: conditional(request.headers()),
            slot: aggregation(&request),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Etag`].
    #[project = EtagProjection]
    #[allow(missing_docs)] // The macro takes no doc comments on fields.
    pub enum EtagFuture<F> {
        /// Waiting for the response.
        Handler {
            #[pin]
            inner: F,
            conditional: Option<HeaderMap>,
            slot: Option<ReuseSlot>,
        },
        /// Reading a body to tag it.
        Body {
            tagging: Pin<Box<dyn Future<Output = Response> + Send>>,
        },
    }
}

impl<F, R, E> Future for EtagFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let tagging = match self.as_mut().project() {
            EtagProjection::Handler {
                inner,
                conditional,
                slot,
            } => {
                let response = std::task::ready!(inner.poll(cx))?.into_response();
                match tag_response(conditional.as_ref(), slot.as_ref(), response) {
                    Ok(response) => return Poll::Ready(Ok(response)),
                    Err((parts, body)) => Box::pin(tag_body(conditional.take(), parts, body)),
                }
            }
            EtagProjection::Body { tagging } => return tagging.as_mut().poll(cx).map(Ok),
        };
        self.set(EtagFuture::Body { tagging });
        self.poll(cx)
    }
}

fn not_modified(mut parts: http::response::Parts) -> Response {
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_strong_stable_and_content_addressed() {
        let a = strong_etag(b"hello");
        assert_eq!(a, strong_etag(b"hello"));
        assert_ne!(a, strong_etag(b"hello!"));
        assert!(a.as_bytes().starts_with(b"\"") && !a.as_bytes().starts_with(b"W/"));
    }

    #[test]
    fn if_none_match_lists_and_weak_forms() {
        let tag = strong_etag(b"x");
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, &tag));
        let listed = format!("\"other\", W/{}", tag.to_str().expect("ascii"));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&listed).expect("header"),
        );
        assert!(if_none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"nope\""));
        assert!(!if_none_match(&h, &tag));
        // The tag of the br representation matches the identity one.
        let br = format!("{}-br\"", &tag.to_str().expect("ascii")[..tag.len() - 1]);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&br).expect("header"),
        );
        assert!(if_none_match(&h, &tag));
        assert_eq!(opaque(br.as_bytes()), opaque(tag.as_bytes()));
    }
}
