//! `/healthz` (the process runs), `/readyz` (signing keys loaded; each
//! upstream's circuit listed) and `/metrics` (Prometheus text).
//!
//! Readiness deliberately does not depend on upstream circuits: if it did, an
//! outage of one domain service would take every replica out of the load
//! balancer, turning a partial failure into a total one.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::shared::Shared;

/// The health routes of a BFF.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Readiness {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    signing_keys: usize,
    upstreams: BTreeMap<&'static str, &'static str>,
}

async fn readyz(State(shared): State<Shared>) -> Response {
    let auth = shared.auth();
    let ready = auth.is_ready();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        reason: (!ready).then_some("signing keys are not loaded yet"),
        signing_keys: auth.key_count(),
        upstreams: shared
            .registry()
            .upstreams()
            .map(|u| (u.name(), u.circuit_state().as_str()))
            .collect(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn metrics() -> Response {
    let body = bff_telemetry::prometheus().render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// `<bff> --health-check`: asks the BFF listening at `listen` for `/readyz`
/// and says whether it answered 200. Container engines run this as the
/// image's `HEALTHCHECK` (the runtime image carries no curl); it is plain
/// blocking I/O because it runs as a process of its own, not on a runtime.
///
/// An unspecified listen address (`0.0.0.0`, `::`) is probed on the loopback
/// of the same family.
pub fn probe_ready(
    listen: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<(), String> {
    bff_probe::get(listen, "/readyz", timeout)
}
