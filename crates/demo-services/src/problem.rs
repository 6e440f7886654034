//! RFC 9457 problem details for the demo services, and the extractors whose
//! rejections are problems: bad input to a demo service is a 400 that names
//! the field, never a panic or a plain-text error.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::faults::FieldError;

/// A problem+json response body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with the given status and explanation.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 400 listing the invalid fields.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("invalid {}: {}", one.field, one.message),
            _ => "the request has invalid fields".to_owned(),
        };
        Problem {
            errors,
            ..Problem::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// 400 for one invalid field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Problem::invalid(vec![FieldError::new(field, message)])
    }

    /// 404 for an unknown resource.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Problem::new(StatusCode::NOT_FOUND, format!("no {what} with id {id}"))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Parses a path or query value that must be a UUID.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Problem> {
    // Only the hyphenated form is accepted: one spelling per id keeps cache
    // keys and logs unambiguous.
    if value.len() != 36 {
        return Err(Problem::invalid_field(
            field,
            "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
        ));
    }
    Uuid::try_parse(value).map_err(|_| {
        Problem::invalid_field(
            field,
            "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
        )
    })
}

/// The field path and message of a serde error, for [`FieldError`].
fn field_error<E: std::fmt::Display>(
    error: serde_path_to_error::Error<E>,
    root: &str,
) -> FieldError {
    let path = error.path().to_string();
    // `?` is the path of a syntax error, before any field was reached.
    let field = if matches!(path.as_str(), "." | "?" | "") {
        root.to_owned()
    } else {
        path
    };
    FieldError::new(field, error.into_inner().to_string())
}

/// A query string deserialised into `T`; unknown or malformed parameters are a
/// 400 naming the parameter.
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ValidQuery)
            .map_err(|e| Problem::invalid(vec![field_error(e, "query")]))
    }
}

/// A JSON body deserialised into `T`; malformed JSON, a wrong type or an
/// unknown field is a 400 naming the field.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::new(e.status(), e.body_text()))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| Problem::invalid(vec![field_error(e, "body")]))?;
        de.end()
            .map_err(|e| Problem::invalid_field("body", e.to_string()))?;
        Ok(ValidJson(value))
    }
}

/// A `limit` query value with bounds, as the list endpoints take it.
pub fn check_limit(limit: Option<i64>, default: usize, max: usize) -> Result<usize, Problem> {
    match limit {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(Problem::invalid_field(
            "limit",
            format!("must be from 1 to {max}, got {n}"),
        )),
    }
}

/// An `offset` query value.
pub fn check_offset(offset: Option<i64>) -> Result<usize, Problem> {
    match offset {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(n as usize),
        Some(n) => Err(Problem::invalid_field(
            "offset",
            format!("must be 0 or more, got {n}"),
        )),
    }
}
