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

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

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

/// Middleware outside compression: a compressed 200 gets its coding in
/// its tag (`"…-br"`), and a 304 repeats the tag the client sent.
pub async fn per_encoding(request: Request, next: Next) -> Response {
    let conditional = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some()
        .then(|| {
            let mut h = HeaderMap::new();
            for value in request.headers().get_all(header::IF_NONE_MATCH) {
                h.append(header::IF_NONE_MATCH, value.clone());
            }
            h
        });
    let mut response = next.run(request).await;
    let Some(tag) = response.headers().get(header::ETAG).cloned() else {
        return response;
    };
    if tag.as_bytes().starts_with(b"W/") {
        return response;
    }
    if response.status() == StatusCode::NOT_MODIFIED {
        if let Some(candidate) = conditional
            .as_ref()
            .and_then(|h| matching(h, &tag))
            .filter(|c| *c != b"*")
            .and_then(|c| HeaderValue::from_bytes(c).ok())
        {
            response.headers_mut().insert(header::ETAG, candidate);
        }
        return response;
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
    response
}

/// Middleware: tags every 200 with a strong ETag and answers a matching
/// `If-None-Match` with 304 and no body.
///
/// A handler may set the ETag itself, computed over what identifies its
/// content (leaving out, say, a generation timestamp that would make every
/// response unique); otherwise the tag is the hash of the whole body.
pub async fn etag(request: Request, next: Next) -> Response {
    // Only the validators are needed after the handler ran.
    let mut conditional = HeaderMap::new();
    for value in request.headers().get_all(header::IF_NONE_MATCH) {
        conditional.append(header::IF_NONE_MATCH, value.clone());
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if !parts.headers.contains_key(header::CACHE_CONTROL) {
        // Per-user data: caches may keep it but must revalidate each time.
        parts.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    if let Some(tag) = parts.headers.get(header::ETAG).cloned() {
        if if_none_match(&conditional, &tag) {
            return not_modified(parts);
        }
        return Response::from_parts(parts, body);
    }
    let bytes = match to_bytes(body, MAX_TAGGED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "response body could not be read for its ETag");
            return bff_problem::ApiError::internal().into_response();
        }
    };
    let tag = strong_etag(&bytes);
    parts.headers.insert(header::ETAG, tag.clone());
    if if_none_match(&conditional, &tag) {
        return not_modified(parts);
    }
    Response::from_parts(parts, Body::from(bytes))
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
