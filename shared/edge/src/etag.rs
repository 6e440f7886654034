//! Strong ETags and conditional GETs.
//!
//! Why: a phone polling its dashboard should not download the same bytes
//! again. The tag is a hash of the response body as produced by the handler
//! (before compression), so it changes exactly when the content does.

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

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110
/// asks for this header).
pub fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|candidate| {
            let candidate = candidate.trim_ascii();
            let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
            candidate == b"*" || candidate == ours
        })
    })
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
    }
}
