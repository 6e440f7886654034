//! Operator routes, present only when `BFF_ADMIN_TOKEN` is set.
//!
//! `GET /admin/flags` lists the BFF's feature flags: each one's split in
//! force and where it comes from (declared, file, environment, Redis), and
//! how the last read of Redis went.
//!
//! `POST /admin/cache/purge` forgets fragments by tag (every fragment of a
//! product: `product:{id}`) or by key, in this replica, in Redis and in
//! every other replica. It is guarded by its own bearer secret rather than
//! by the identity provider's tokens: purging is what an operator reaches
//! for when something upstream is wrong, the identity provider included.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bff_problem::{ApiError, FieldError};
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::shared::Shared;

/// The purge route.
pub const PURGE_PATH: &str = "/admin/cache/purge";
/// The flags listing.
pub const FLAGS_PATH: &str = "/admin/flags";

/// Most tags plus keys one purge may name.
const MAX_ITEMS: usize = 1000;
/// Longest tag or key.
const MAX_LEN: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PurgeResponse {
    tags: Vec<String>,
    keys: Vec<String>,
}

/// The admin routes, or `None` when no admin token is configured.
pub(crate) fn router(shared: &Shared) -> Option<Router> {
    shared.config().admin_token.as_ref()?;
    Some(
        Router::new()
            .route(PURGE_PATH, post(purge))
            .route(FLAGS_PATH, get(flags))
            .with_state(shared.clone()),
    )
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of the secret a guess got right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = shared
        .config()
        .admin_token
        .as_deref()
        .ok_or_else(ApiError::internal)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim());
    match given {
        None => Err(ApiError::unauthorized(
            "the admin routes take the admin token as a bearer token",
        )),
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::forbidden("wrong admin token")),
    }
}

fn parse(body: &[u8]) -> Result<PurgeRequest, ApiError> {
    let request: PurgeRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON object {{\"tags\": [...], \"keys\": [...]}}: {e}"
        ))
    })?;
    let mut errors = Vec::new();
    let count = request.tags.len() + request.keys.len();
    if count == 0 || count > MAX_ITEMS {
        errors.push(FieldError::new(
            "tags",
            format!("tags and keys together must name 1 to {MAX_ITEMS} items, got {count}"),
        ));
    }
    for (field, items) in [("tags", &request.tags), ("keys", &request.keys)] {
        for (i, item) in items.iter().enumerate() {
            if item.is_empty() || item.len() > MAX_LEN || item.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("must be 1 to {MAX_LEN} characters without control characters"),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(ApiError::validation(errors))
    }
}

#[derive(Debug, Serialize)]
struct FlagsResponse {
    flags: Vec<bff_flags::FlagView>,
    shared: Option<bff_flags::SharedView>,
}

async fn flags(State(shared): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    let flags = shared.flags();
    Ok(axum::Json(FlagsResponse {
        flags: flags.list(),
        shared: flags.shared(),
    })
    .into_response())
}

async fn purge(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    let request = parse(&body)?;
    let cache = shared.fragments().cache();
    for tag in &request.tags {
        cache.invalidate_tag(tag).await;
    }
    for key in &request.keys {
        cache.invalidate(key).await;
    }
    tracing::info!(tags = ?request.tags, keys = ?request.keys, "cache purged");
    Ok((
        StatusCode::OK,
        axum::Json(PurgeResponse {
            tags: request.tags,
            keys: request.keys,
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }

    #[test]
    fn purge_bodies_are_validated() {
        assert!(parse(br#"{"tags":["product:1"]}"#).is_ok());
        assert_eq!(parse(b"{}").expect_err("empty").status(), 400);
        assert_eq!(
            parse(br#"{"tags":["a"],"everything":true}"#)
                .expect_err("unknown field")
                .status(),
            400
        );
        let bad = parse(br#"{"tags":["ok",""],"keys":["x\u0000"]}"#).expect_err("bad items");
        let fields: Vec<&str> = bad.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["tags[1]", "keys[0]"]);
    }
}
