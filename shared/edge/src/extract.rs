//! Extractors whose rejections are problem+json naming the field.

use axum::extract::FromRequestParts;
use bff_problem::{ApiError, FieldError};
use http::request::Parts;
use serde::de::DeserializeOwned;

/// A query string decoded into `T`. A malformed or unknown parameter (with
/// `#[serde(deny_unknown_fields)]`) is a 400 naming it.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                let field = if matches!(path.as_str(), "." | "?" | "") {
                    "query".to_owned()
                } else {
                    path
                };
                ApiError::validation(vec![FieldError::new(field, error.into_inner().to_string())])
            })
    }
}

/// Parses an optional boolean query value (`true`/`false`, `1`/`0`).
pub fn parse_bool(field: &str, value: Option<&str>, default: bool) -> Result<bool, FieldError> {
    match value {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(FieldError::new(
            field,
            format!("must be true or false, got {other:?}"),
        )),
    }
}

/// Parses a UUID from a path or query value (hyphenated form only).
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, FieldError> {
    if value.len() == 36
        && let Ok(id) = uuid::Uuid::try_parse(value)
    {
        return Ok(id);
    }
    Err(FieldError::new(
        field,
        "must be a UUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_uuids() {
        assert_eq!(parse_bool("f", None, true), Ok(true));
        assert_eq!(parse_bool("f", Some("0"), true), Ok(false));
        assert_eq!(
            parse_bool("f", Some("yes"), true).expect_err("bad").field,
            "f"
        );
        assert!(parse_uuid("id", "3f2504e0-4f89-41d3-9a0c-0305e82c3301").is_ok());
        for bad in [
            "",
            "3f2504e04f8941d39a0c0305e82c3301",
            "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}",
            "../../etc/passwd",
        ] {
            assert!(parse_uuid("id", bad).is_err(), "{bad}");
        }
    }
}
