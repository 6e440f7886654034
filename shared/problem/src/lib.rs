//! `ApiError`: the one error type BFF handlers return, rendered as RFC 9457
//! `application/problem+json`.
//!
//! It lives in its own small crate because every layer needs it — the token
//! extractor, the aggregation core, the edge — and none of them should depend
//! on another just to fail properly. Each error carries a stable,
//! machine-readable `code` (also the last segment of its `type` URI) so that
//! clients branch on codes, never on prose.
//!
//! The edge fills in `requestId` and `traceId`: an `ApiError` turned into a
//! response leaves itself in the response extensions, and the edge renders
//! it with the request's ids ([`ApiError::render`]). The body of
//! `into_response` is rendered only if it is sent as it is, so an error that
//! reaches the edge is serialised once (a refusal under overload is mostly
//! that work). Internal causes are never part of the body; log them where
//! the error is made.
//!
//! ```
//! use bff_problem::{ApiError, FieldError};
//! let e = ApiError::validation(vec![FieldError::new("productId", "must be a UUID")]);
//! assert_eq!(e.status().as_u16(), 400);
//! assert_eq!(e.code(), "validation_failed");
//! ```

#![warn(missing_docs)]

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Extra {
    /// `WWW-Authenticate`.
    Challenge(std::borrow::Cow<'static, str>),
    /// The policy of a quota exceeded (`violated-policies`).
    Quota(&'static str),
}

/// `s` made safe inside a quoted-string of a challenge: quotes, backslashes
/// and control characters are dropped (RFC 6750 forbids them in these
/// attributes anyway).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

fn secs_u32(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The registered problem type of a request over its quota.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field as the client named it (`productId`, `ids[3]`, `includeReviews`).
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// Seconds (kept small: an `ApiError` travels in every `Result`).
    retry_after: Option<u32>,
    /// What else the answer says: an authentication challenge, or the
    /// quota a request exceeded. (One field: an `ApiError` travels in every
    /// `Result`, so it is kept small.)
    extra: Option<Extra>,
}

impl ApiError {
    /// A problem with a status, a stable code, a short title and a detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            extra: None,
        }
    }

    /// 400: the request is malformed in a way no single field explains.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Bad request",
            detail,
        )
    }

    /// 400 listing every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "Invalid request",
                detail,
            )
        }
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError {
            extra: Some(Extra::Challenge("Bearer".into())),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                detail,
            )
        }
    }

    /// 401 for a request without credentials, with the RFC 6750 challenge
    /// naming the protection space (`Bearer realm="…"`, no error code: the
    /// client simply has to authenticate).
    pub fn unauthenticated(realm: &str, detail: impl Into<String>) -> Self {
        ApiError {
            extra: Some(Extra::Challenge(
                format!("Bearer realm=\"{}\"", quoted(realm)).into(),
            )),
            ..ApiError::unauthorized(detail)
        }
    }

    /// 401 for a token that was refused, with the RFC 6750 challenge
    /// (`error="invalid_token"` and the reason in `error_description`), so
    /// that a client knows to get a new token rather than retry.
    pub fn invalid_token(realm: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        ApiError {
            extra: Some(Extra::Challenge(
                format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(realm),
                    quoted(&detail)
                )
                .into(),
            )),
            ..ApiError::unauthorized(detail)
        }
    }

    /// 403 for a token without the scope an operation needs, with the RFC
    /// 6750 challenge naming it (`error="insufficient_scope", scope="…"`).
    pub fn insufficient_scope(scope: &str) -> Self {
        ApiError {
            extra: Some(Extra::Challenge(
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    quoted(scope)
                )
                .into(),
            )),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Forbidden",
                format!("this operation requires the scope {scope}"),
            )
        }
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// 503 with `Retry-After` in seconds.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs_u32(retry_after_secs)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
            )
        }
    }

    /// 429 with `Retry-After` in seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs_u32(retry_after_secs)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
                detail,
            )
        }
    }

    /// 429 over a quota: the IANA-registered `quota-exceeded` problem type
    /// (draft-ietf-httpapi-ratelimit-headers-11) naming the policy, with
    /// `Retry-After` in seconds.
    pub fn quota_exceeded(policy: &'static str, retry_after_secs: u64) -> Self {
        ApiError {
            extra: Some(Extra::Quota(policy)),
            ..ApiError::rate_limited(
                format!("the {policy} quota is used up; retry in {retry_after_secs} s"),
                retry_after_secs,
            )
        }
    }

    /// 500. The detail is fixed: internal causes are logged, never sent.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; the request id identifies it in our logs",
        )
    }

    /// A generic problem for a bare error status produced below the handlers
    /// (a 405 from routing, a 413 from the body limit, …).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, title, detail) = match status.as_u16() {
            404 => ("not_found", "Not found", "no such resource"),
            405 => (
                "method_not_allowed",
                "Method not allowed",
                "this resource does not accept that method",
            ),
            408 => (
                "request_timeout",
                "Request timeout",
                "the request took too long to arrive",
            ),
            413 => (
                "payload_too_large",
                "Payload too large",
                "the request body is larger than allowed",
            ),
            415 => (
                "unsupported_media_type",
                "Unsupported media type",
                "the request body has an unsupported type",
            ),
            431 => (
                "headers_too_large",
                "Request header fields too large",
                "the request headers are too large",
            ),
            400..=499 => (
                "bad_request",
                "Bad request",
                "the request could not be understood",
            ),
            503 => (
                "unavailable",
                "Service unavailable",
                "the service is temporarily unavailable",
            ),
            504 => (
                "timeout",
                "Gateway timeout",
                "the request did not complete in time",
            ),
            _ => {
                return ApiError {
                    status,
                    ..ApiError::internal()
                };
            }
        };
        ApiError::new(status, code, title, detail)
    }

    /// The same problem, explained by `detail` instead.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Adds a `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs_u32(secs));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The invalid fields, for validation errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Renders the response, with the ids of the request when known.
    pub fn to_response(&self, request_id: Option<&str>, trace_id: Option<&str>) -> Response {
        ApiError::render(&Arc::new(self.clone()), request_id, trace_id)
    }

    /// `error` as problem+json with the request's ids, leaving `error`
    /// itself (not a copy) in the response extensions.
    pub fn render(
        error: &Arc<ApiError>,
        request_id: Option<&str>,
        trace_id: Option<&str>,
    ) -> Response {
        let mut response = Response::new(axum::body::Body::from(error.body(request_id, trace_id)));
        *response.status_mut() = error.status;
        error.set_headers(response.headers_mut());
        response.extensions_mut().insert(error.clone());
        response
    }

    /// The problem+json body.
    fn body(&self, request_id: Option<&str>, trace_id: Option<&str>) -> bytes::Bytes {
        let body = ProblemBody {
            kind: match self.extra {
                Some(Extra::Quota(_)) => QUOTA_EXCEEDED.to_owned(),
                _ => format!("urn:problem-type:bff:{}", self.code),
            },
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id,
            trace_id,
            errors: &self.errors,
            violated_policies: match &self.extra {
                Some(Extra::Quota(policy)) => std::slice::from_ref(policy),
                _ => &[],
            },
        };
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_vec(&body).unwrap_or_default().into()
    }

    /// The headers every rendering of this problem carries.
    fn set_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(Extra::Challenge(challenge)) = &self.extra
            && let Ok(value) = HeaderValue::from_str(challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    /// The problem without the request's ids, its body rendered only when
    /// polled: the edge replaces it with [`ApiError::render`]'s.
    fn into_response(self) -> Response {
        let error = Arc::new(self);
        let mut response = Response::new(axum::body::Body::new(Unrendered(Some(error.clone()))));
        *response.status_mut() = error.status;
        error.set_headers(response.headers_mut());
        response.extensions_mut().insert(error);
        response
    }
}

/// The body of a problem not yet rendered: it is serialised on the first
/// poll, so one replaced before it is sent costs nothing.
struct Unrendered(Option<Arc<ApiError>>);

impl http_body::Body for Unrendered {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(
            self.0
                .take()
                .map(|error| Ok(http_body::Frame::data(error.body(None, None)))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(
        rename = "violated-policies",
        skip_serializing_if = "<[&str]>::is_empty"
    )]
    violated_policies: &'a [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body(response: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(response.into_body(), 1 << 16).await.expect("body"))
            .expect("json")
    }

    #[tokio::test]
    async fn into_response_renders_its_body_only_when_sent_and_the_edge_renders_the_same_error() {
        let response = ApiError::unavailable("busy", 1).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let error = response
            .extensions()
            .get::<Arc<ApiError>>()
            .cloned()
            .expect("the error rides along");
        // Rendered with ids: the same error, not a copy.
        let rendered = ApiError::render(&error, Some("req-1"), None);
        let again = rendered.extensions().get::<Arc<ApiError>>().expect("error");
        assert!(Arc::ptr_eq(&error, again));
        assert_eq!(body(rendered).await["requestId"], "req-1");
        // Sent as it is, the body is rendered then, without ids.
        let sent = body(response).await;
        assert_eq!(sent["code"], "unavailable");
        assert_eq!(sent["detail"], "busy");
        assert!(sent.get("requestId").is_none());
    }

    #[tokio::test]
    async fn renders_rfc9457_with_ids_and_field_errors() {
        let error = ApiError::validation(vec![FieldError::new("ids", "at most 50 ids")]);
        let response = error.to_response(Some("req-1"), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(response.extensions().get::<Arc<ApiError>>().is_some());
        let json = body(response).await;
        assert_eq!(json["type"], "urn:problem-type:bff:validation_failed");
        assert_eq!(json["status"], 400);
        assert_eq!(json["requestId"], "req-1");
        assert_eq!(json["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(json["errors"][0]["field"], "ids");
        assert_eq!(json["detail"], "ids: at most 50 ids");
    }

    #[tokio::test]
    async fn unavailable_and_unauthorized_carry_their_headers() {
        let response = ApiError::unavailable("user data is unavailable", 5).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = ApiError::unauthorized("missing token").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let json = body(response).await;
        assert!(json.get("errors").is_none() && json.get("requestId").is_none());
    }

    #[tokio::test]
    async fn challenges_follow_rfc_6750_and_cannot_be_broken_by_their_text() {
        let response =
            ApiError::invalid_token("bff-\"web", "the token has \"expired\"").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="bff-web", error="invalid_token", error_description="the token has expired""#
        );
        let response = ApiError::unauthenticated("bff-web", "a token is required").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="bff-web""#
        );
        let response = ApiError::insufficient_scope("live").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="live""#
        );
        assert_eq!(body(response).await["code"], "insufficient_scope");
    }

    #[test]
    fn bare_statuses_map_to_stable_codes_without_leaking() {
        assert_eq!(
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE).code(),
            "payload_too_large"
        );
        assert_eq!(
            ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED).code(),
            "method_not_allowed"
        );
        let internal = ApiError::from_status(StatusCode::BAD_GATEWAY);
        assert_eq!(
            (internal.status().as_u16(), internal.code()),
            (502, "internal")
        );
    }
}
