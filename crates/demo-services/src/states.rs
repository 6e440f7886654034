//! Provider states for contract verification: `POST /provider-states` on the
//! control API, as a Pact verifier calls it before each interaction
//! (`{"state", "params", "action": "setup" | "teardown"}`).
//!
//! The demo data is deterministic (one seed), so a state is made true by
//! checking that the named user or product is as the consumer expects, and
//! every fault is cleared so that nothing left over from an earlier
//! interaction answers in the service's place. A state that does not hold,
//! or that no handler knows, is refused (400 naming it): verification then
//! fails at the state, not at a confusing body mismatch.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::control::ControlState;
use crate::problem::{Problem, ValidJson, parse_uuid};

/// The states this provider can set up, for the error naming them.
pub const STATES: &[&str] = &[
    "a user exists",
    "a user exists with orders",
    "a user exists with recommendations",
    "a user does not exist",
    "a product exists with reviews",
    "a product has no reviews",
    "products exist",
];

/// A state change request.
#[derive(Debug, Deserialize)]
pub struct StateChange {
    state: String,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    action: Option<String>,
}

fn param(params: &Map<String, Value>, name: &str) -> Result<Uuid, Problem> {
    let value = params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::invalid_field(&format!("params.{name}"), "required (a UUID)"))?;
    parse_uuid(&format!("params.{name}"), value)
}

fn refuse(state: &str, why: impl std::fmt::Display) -> Problem {
    Problem::invalid_field("state", format!("{state:?} does not hold: {why}"))
}

/// `POST /provider-states`.
pub async fn provider_state(
    State(s): State<ControlState>,
    ValidJson(change): ValidJson<StateChange>,
) -> Result<Response, Problem> {
    match change.action.as_deref() {
        None | Some("setup") => {}
        // Nothing a setup does needs undoing: the data is read-only.
        Some("teardown") => return Ok(StatusCode::OK.into_response()),
        Some(other) => {
            return Err(Problem::invalid_field(
                "action",
                format!("{other:?} is neither setup nor teardown"),
            ));
        }
    }
    s.faults.clear_all();
    let data = &s.data;
    let state = change.state.as_str();
    let params = &change.params;
    match state {
        "a user exists" | "a user exists with orders" | "a user exists with recommendations" => {
            let id = param(params, "userId")?;
            if data.user(&id).is_none() {
                return Err(refuse(state, format_args!("no user {id}")));
            }
            if state.ends_with("orders") && data.orders_of(&id).is_none_or(|o| o.len() == 0) {
                return Err(refuse(state, format_args!("user {id} has no orders")));
            }
            if state.ends_with("recommendations")
                && data.recommendations_for(&id).is_none_or(<[_]>::is_empty)
            {
                return Err(refuse(
                    state,
                    format_args!("user {id} has no recommendations"),
                ));
            }
        }
        "a user does not exist" => {
            let id = param(params, "userId")?;
            if data.user(&id).is_some() {
                return Err(refuse(state, format_args!("user {id} exists")));
            }
        }
        "a product exists with reviews" | "a product has no reviews" => {
            let id = param(params, "productId")?;
            let reviews = data
                .reviews_of(&id)
                .ok_or_else(|| refuse(state, format_args!("no product {id}")))?;
            if reviews.is_empty() == state.ends_with("with reviews") {
                return Err(refuse(
                    state,
                    format_args!("product {id} has {} reviews", reviews.len()),
                ));
            }
        }
        "products exist" => {
            let ids = params
                .get("productIds")
                .and_then(Value::as_array)
                .ok_or_else(|| Problem::invalid_field("params.productIds", "required (UUIDs)"))?;
            for id in ids {
                let id = parse_uuid("params.productIds", id.as_str().unwrap_or_default())?;
                if data.product(&id).is_none() {
                    return Err(refuse(state, format_args!("no product {id}")));
                }
            }
        }
        _ => {
            return Err(Problem::invalid_field(
                "state",
                format!(
                    "unknown provider state {state:?}; known: {}",
                    STATES.join(", ")
                ),
            ));
        }
    }
    Ok((StatusCode::OK, axum::Json(serde_json::json!({}))).into_response())
}
