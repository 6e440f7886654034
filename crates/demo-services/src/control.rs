//! The control API (port 7099): fault injection, price and stock changes,
//! key rotation and request counters for the demo services.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::faults::{FaultRegistry, FaultSpec, ServiceName};
use crate::grpc::StockBook;
use crate::identity::Identity;
use crate::pricing::{PriceBook, PriceError, PriceUpdate};
use crate::problem::{Problem, ValidJson, parse_uuid};
use crate::rest::json;
use crate::stats::Stats;

/// What the control API acts on.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// Faults of every service.
    pub faults: Arc<FaultRegistry>,
    /// Prices of the pricing service.
    pub prices: Arc<PriceBook>,
    /// Stock of the inventory service.
    pub stock: Arc<StockBook>,
    /// The identity provider (for key rotation).
    pub identity: Arc<Identity>,
    /// Request counters.
    pub stats: Arc<Stats>,
    /// The demo data (read by provider states).
    pub data: Arc<crate::data::DemoData>,
}

/// The control API's routes.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/faults", get(list_faults).delete(clear_all_faults))
        .route(
            "/faults/{service}",
            put(set_fault).delete(clear_fault).get(get_fault),
        )
        .route("/prices/{product_id}", put(set_price).get(get_price))
        .route("/stock/{product_id}", put(set_stock).get(get_stock))
        .route("/identity/rotate-keys", post(rotate_keys))
        .route("/stats", get(get_stats).delete(reset_stats))
        .route("/provider-states", post(crate::states::provider_state))
        .with_state(state)
}

fn service(name: &str) -> Result<ServiceName, Problem> {
    ServiceName::parse(name).ok_or_else(|| {
        let known: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
        Problem::invalid_field(
            "service",
            format!("unknown service {name:?}; one of {}", known.join(", ")),
        )
    })
}

#[derive(Serialize)]
struct FaultList {
    faults: std::collections::BTreeMap<ServiceName, crate::faults::Fault>,
}

async fn list_faults(State(s): State<ControlState>) -> Response {
    json(&FaultList {
        faults: s.faults.list(),
    })
}

async fn clear_all_faults(State(s): State<ControlState>) -> StatusCode {
    s.faults.clear_all();
    StatusCode::NO_CONTENT
}

async fn get_fault(
    State(s): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let service = service(&name)?;
    let fault = s
        .faults
        .get(service)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no fault set on {service}")))?;
    Ok(json(&fault))
}

async fn set_fault(
    State(s): State<ControlState>,
    Path(name): Path<String>,
    ValidJson(spec): ValidJson<FaultSpec>,
) -> Result<Response, Problem> {
    let service = service(&name)?;
    let fault = spec.validate().map_err(Problem::invalid)?;
    tracing::info!(%service, ?fault, "fault set");
    s.faults.set(service, fault.clone());
    Ok(json(&fault))
}

async fn clear_fault(
    State(s): State<ControlState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    let service = service(&name)?;
    s.faults.clear(service);
    tracing::info!(%service, "fault cleared");
    Ok(StatusCode::NO_CONTENT)
}

async fn set_price(
    State(s): State<ControlState>,
    Path(id): Path<String>,
    ValidJson(update): ValidJson<PriceUpdate>,
) -> Result<Response, Problem> {
    let id = parse_uuid("productId", &id)?;
    match s.prices.update(id, update).await {
        Ok(price) => Ok(json(&price)),
        Err(PriceError::Invalid(errors)) => Err(Problem::invalid(errors)),
        Err(PriceError::NotFound(id)) => Err(Problem::not_found("product", id)),
    }
}

async fn get_price(
    State(s): State<ControlState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_uuid("productId", &id)?;
    Ok(json(
        &s.prices
            .get(&id)
            .ok_or_else(|| Problem::not_found("product", id))?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockUpdate {
    available: f64,
}

async fn set_stock(
    State(s): State<ControlState>,
    Path(id): Path<String>,
    ValidJson(update): ValidJson<StockUpdate>,
) -> Result<Response, Problem> {
    let id = parse_uuid("productId", &id)?;
    let available = update.available;
    if available.fract() != 0.0 || !(0.0..=1_000_000.0).contains(&available) {
        return Err(Problem::invalid_field(
            "available",
            format!("must be a whole number from 0 to 1000000, got {available}"),
        ));
    }
    Ok(json(
        &s.stock
            .set_available(&id, available as i64)
            .ok_or_else(|| Problem::not_found("product", id))?,
    ))
}

async fn get_stock(
    State(s): State<ControlState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_uuid("productId", &id)?;
    Ok(json(
        &s.stock
            .get(&id)
            .ok_or_else(|| Problem::not_found("product", id))?,
    ))
}

async fn rotate_keys(State(s): State<ControlState>) -> Response {
    let identity = s.identity.clone();
    // RSA key generation is CPU-bound: keep it off the async workers.
    match tokio::task::spawn_blocking(move || identity.rotate_keys()).await {
        Ok(Ok(_)) => json(&s.identity.jwks()),
        Ok(Err(error)) => {
            tracing::error!(%error, "key rotation failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "key rotation failed").into_response()
        }
        Err(error) => {
            tracing::error!(%error, "key rotation task failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "key rotation failed").into_response()
        }
    }
}

async fn get_stats(State(s): State<ControlState>) -> Response {
    json(&s.stats.snapshot())
}

async fn reset_stats(State(s): State<ControlState>) -> StatusCode {
    s.stats.reset();
    StatusCode::NO_CONTENT
}
