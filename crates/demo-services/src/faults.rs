//! Fault injection: makes a demo service slow, failing, resetting or hanging
//! on demand, so that the BFFs' resilience can be shown and tested against
//! real sockets instead of mocks.
//!
//! One [`FaultRegistry`] holds the current [`Fault`] of every service; the
//! control API writes it and [`inject`] (a middleware in front of every demo
//! service) reads it on each request. Errors are spoken in the protocol of the
//! service: problem+json for REST, a GraphQL error body for pricing, a
//! trailers-only `grpc-status` for the gRPC services.
//!
//! A stream already open (`WatchStock`, the pricing service's event stream)
//! is not a new request, but a fault set while it runs must still be able to
//! break it, or a live-update client could never be shown losing its
//! upstream: each change of the fault cuts it with the fault's `error_rate`
//! or `reset_rate` as probability.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use parking_lot::RwLock;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::problem::Problem;
use crate::serve::ConnectionControl;
use crate::stats::Stats;

/// The demo services (and the identity provider) that faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    /// The development identity provider.
    Identity,
    /// REST user profiles.
    User,
    /// REST orders.
    Order,
    /// REST recommendations.
    Recommendation,
    /// gRPC catalogue.
    Product,
    /// GraphQL prices.
    Pricing,
    /// REST reviews.
    Review,
    /// gRPC stock levels and the stock watch.
    Inventory,
}

impl ServiceName {
    /// Every service, in port order.
    pub const ALL: [ServiceName; 8] = [
        ServiceName::Identity,
        ServiceName::User,
        ServiceName::Order,
        ServiceName::Recommendation,
        ServiceName::Product,
        ServiceName::Pricing,
        ServiceName::Review,
        ServiceName::Inventory,
    ];

    /// The name used in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Identity => "identity",
            ServiceName::User => "user",
            ServiceName::Order => "order",
            ServiceName::Recommendation => "recommendation",
            ServiceName::Product => "product",
            ServiceName::Pricing => "pricing",
            ServiceName::Review => "review",
            ServiceName::Inventory => "inventory",
        }
    }

    /// Parses a name as used in URLs.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The contract's default port.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceName::Identity => 7000,
            ServiceName::User => 7001,
            ServiceName::Order => 7002,
            ServiceName::Recommendation => 7003,
            ServiceName::Product => 7004,
            ServiceName::Pricing => 7005,
            ServiceName::Review => 7006,
            ServiceName::Inventory => 7007,
        }
    }

    /// How the service speaks, which decides how an injected error looks.
    pub fn protocol(self) -> Protocol {
        match self {
            ServiceName::Product | ServiceName::Inventory => Protocol::Grpc,
            ServiceName::Pricing => Protocol::GraphQl,
            _ => Protocol::Http,
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// REST/JSON (and the identity provider).
    Http,
    /// GraphQL over HTTP.
    GraphQl,
    /// gRPC over HTTP/2.
    Grpc,
}

/// What a faulty service does to the body of an answer it would have given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFault {
    /// The answer is left alone.
    #[default]
    None,
    /// The body is cut short and does not parse (for gRPC: a message that
    /// is not valid protobuf).
    Malformed,
    /// The body is larger than any client should buffer (17 MiB).
    Oversized,
}

/// The size of an oversized body: above the BFFs' 16 MiB limit.
pub const OVERSIZED_BYTES: usize = 17 * 1024 * 1024;

/// What is wrong with a service right now. All parts combine: a request first
/// waits `latency_ms` plus up to `jitter_ms`, then hangs while `hang` is set,
/// then may have its connection reset (`reset_rate`), then may fail with
/// `status` (`error_rate`); an answer that gets through has its body
/// spoiled as `body` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Fixed delay before the request is handled, in milliseconds.
    pub latency_ms: u64,
    /// Extra random delay, uniform in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Probability (0 to 1) that a request fails with `status`.
    pub error_rate: f64,
    /// The HTTP status of an injected failure (mapped to a gRPC code for gRPC).
    pub status: u16,
    /// Probability (0 to 1) that the connection is reset instead of answered.
    pub reset_rate: f64,
    /// While true, requests never get an answer (until the fault changes).
    pub hang: bool,
    /// What happens to the body of a successful answer.
    pub body: BodyFault,
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            status: 503,
            reset_rate: 0.0,
            hang: false,
            body: BodyFault::None,
        }
    }
}

/// The largest latency or jitter accepted: ten minutes.
pub const MAX_DELAY_MS: u64 = 600_000;

/// A fault as a client sends it; every field optional. Numbers are read as
/// floats so that a bad value gets a message naming the field rather than a
/// parser error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    error_rate: Option<f64>,
    status: Option<f64>,
    reset_rate: Option<f64>,
    hang: Option<bool>,
    body: Option<String>,
}

/// One invalid field of a request: the BFFs' own type, so that the demo
/// services and the gateways name bad input the same way.
pub use bff_problem::FieldError;

impl FaultSpec {
    /// Checks every field and builds the fault, or lists every invalid field.
    pub fn validate(self) -> Result<Fault, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fault = Fault::default();
        let millis = |name: &str, v: Option<f64>, errors: &mut Vec<FieldError>| -> u64 {
            match v {
                None => 0,
                Some(v) if v.fract() != 0.0 || !(0.0..=MAX_DELAY_MS as f64).contains(&v) => {
                    errors.push(FieldError::new(
                        name,
                        format!("must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}, got {v}"),
                    ));
                    0
                }
                Some(v) => v as u64,
            }
        };
        fault.latency_ms = millis("latency_ms", self.latency_ms, &mut errors);
        fault.jitter_ms = millis("jitter_ms", self.jitter_ms, &mut errors);
        let rate = |name: &str, v: Option<f64>, errors: &mut Vec<FieldError>| -> f64 {
            match v {
                None => 0.0,
                Some(v) if !(0.0..=1.0).contains(&v) => {
                    errors.push(FieldError::new(
                        name,
                        format!("must be a probability from 0 to 1, got {v}"),
                    ));
                    0.0
                }
                Some(v) => v,
            }
        };
        fault.error_rate = rate("error_rate", self.error_rate, &mut errors);
        fault.reset_rate = rate("reset_rate", self.reset_rate, &mut errors);
        match self.status {
            None => {}
            Some(s) if s.fract() != 0.0 || !(400.0..=599.0).contains(&s) => {
                errors.push(FieldError::new(
                    "status",
                    format!("must be an HTTP error status from 400 to 599, got {s}"),
                ));
            }
            Some(s) => fault.status = s as u16,
        }
        fault.hang = self.hang.unwrap_or(false);
        fault.body = match self.body.as_deref() {
            None | Some("none") => BodyFault::None,
            Some("malformed") => BodyFault::Malformed,
            Some("oversized") => BodyFault::Oversized,
            Some(other) => {
                errors.push(FieldError::new(
                    "body",
                    format!("must be none, malformed or oversized, got {other:?}"),
                ));
                BodyFault::None
            }
        };
        if errors.is_empty() {
            Ok(fault)
        } else {
            Err(errors)
        }
    }
}

/// The current fault of every service, with change notification so that hung
/// requests wake up when their fault is cleared.
#[derive(Debug)]
pub struct FaultRegistry {
    faults: RwLock<BTreeMap<ServiceName, Fault>>,
    changed: watch::Sender<u64>,
}

impl Default for FaultRegistry {
    fn default() -> Self {
        FaultRegistry {
            faults: RwLock::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
        }
    }
}

impl FaultRegistry {
    /// Replaces the fault of `service`.
    pub fn set(&self, service: ServiceName, fault: Fault) {
        self.faults.write().insert(service, fault);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Clears the fault of `service`; true when there was one.
    pub fn clear(&self, service: ServiceName) -> bool {
        let had = self.faults.write().remove(&service).is_some();
        self.changed.send_modify(|v| *v += 1);
        had
    }

    /// Clears every fault.
    pub fn clear_all(&self) {
        self.faults.write().clear();
        self.changed.send_modify(|v| *v += 1);
    }

    /// The fault of `service`, if any.
    pub fn get(&self, service: ServiceName) -> Option<Fault> {
        self.faults.read().get(&service).cloned()
    }

    /// Every current fault.
    pub fn list(&self) -> BTreeMap<ServiceName, Fault> {
        self.faults.read().clone()
    }

    /// Waits until `service` is no longer set to hang.
    async fn wait_while_hanging(&self, service: ServiceName) {
        let mut changes = self.changed.subscribe();
        while self.get(service).is_some_and(|f| f.hang) {
            if changes.changed().await.is_err() {
                // The registry is gone: hang for good, as asked.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// State of the fault middleware of one service.
#[derive(Clone, Debug)]
pub struct FaultState {
    /// The service this middleware sits in front of.
    pub service: ServiceName,
    /// Where faults are read.
    pub faults: Arc<FaultRegistry>,
    /// Where requests are counted.
    pub stats: Arc<Stats>,
}

/// Middleware: counts the request, continues the caller's trace in a server
/// span (recorded when spans are exported), then applies the service's
/// current fault.
pub async fn inject(State(state): State<FaultState>, request: Request, next: Next) -> Response {
    let operation = match state.service.protocol() {
        Protocol::Grpc => request.uri().path().to_owned(),
        _ => {
            let path = request
                .extensions()
                .get::<MatchedPath>()
                .map_or(request.uri().path(), MatchedPath::as_str);
            format!("{} {}", request.method(), path)
        }
    };
    if operation != "GET /healthz" {
        state.stats.record(state.service, &operation);
    }
    let span = tracing::debug_span!(
        "server",
        otel.name = %format_args!("{} {}", state.service, operation),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        demo.service = state.service.as_str(),
        operation = %operation,
        http.response.status_code = tracing::field::Empty,
    );
    bff_telemetry::continue_trace(&span, request.headers());
    let response = apply_fault(state.clone(), request, next)
        .instrument(span.clone())
        .await;
    let response = if is_stream(&operation, &response) {
        cut_by_faults(state, response)
    } else {
        response
    };
    if !span.is_disabled() {
        let status = response.status().as_u16();
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
    response
}

async fn apply_fault(state: FaultState, request: Request, next: Next) -> Response {
    let Some(fault) = state.faults.get(state.service) else {
        return next.run(request).await;
    };
    let (delay, reset, fail) = {
        let mut rng = rand::thread_rng();
        let jitter = if fault.jitter_ms > 0 {
            rng.gen_range(0..=fault.jitter_ms)
        } else {
            0
        };
        (
            Duration::from_millis(fault.latency_ms + jitter),
            fault.reset_rate > 0.0 && rng.gen_bool(fault.reset_rate),
            fault.error_rate > 0.0 && rng.gen_bool(fault.error_rate),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fault.hang {
        state.faults.wait_while_hanging(state.service).await;
    }
    if reset && let Some(control) = request.extensions().get::<ConnectionControl>() {
        control.reset();
        // The accept loop drops this request together with its connection.
        std::future::pending::<()>().await;
    }
    if fail {
        return injected_error(state.service, fault.status);
    }
    let response = next.run(request).await;
    match fault.body {
        BodyFault::None => response,
        spoiled => spoiled_body(state.service, spoiled, response),
    }
}

/// Whether `response` is a long-lived stream (`WatchStock`, Server-Sent
/// Events) rather than one answer.
fn is_stream(operation: &str, response: &Response) -> bool {
    operation.ends_with("/WatchStock")
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// A stream that is cut (the HTTP/2 stream reset, the HTTP/1.1 connection
/// closed) when a fault set on its service while it is open would have
/// failed or reset a request: each change of the fault is one draw, so
/// `error_rate: 1` cuts every open stream, as it fails every new request.
fn cut_by_faults(state: FaultState, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let cut = Box::pin(async move {
        let mut changes = state.faults.changed.subscribe();
        loop {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
            let Some(fault) = state.faults.get(state.service) else {
                continue;
            };
            let mut rng = rand::thread_rng();
            let fails = (fault.error_rate > 0.0 && rng.gen_bool(fault.error_rate))
                || (fault.reset_rate > 0.0 && rng.gen_bool(fault.reset_rate));
            if fails {
                return;
            }
        }
    });
    Response::from_parts(parts, Body::new(CutBody { body, cut }))
}

/// A body that ends with an error when `cut` resolves.
struct CutBody {
    body: Body,
    cut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl http_body::Body for CutBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "stream cut by an injected fault",
            )))));
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// A successful answer whose body is malformed or oversized, in the
/// protocol of `service` (gRPC keeps its framing and an OK status, so only
/// the message itself is wrong).
fn spoiled_body(service: ServiceName, fault: BodyFault, response: Response) -> Response {
    let payload: bytes::Bytes = match fault {
        BodyFault::Oversized => vec![b' '; OVERSIZED_BYTES].into(),
        _ => match service.protocol() {
            Protocol::Grpc => bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x08]),
            _ => bytes::Bytes::from_static(b"{\"id\": \"trunc"),
        },
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    match service.protocol() {
        Protocol::Grpc => {
            let mut frame = Vec::with_capacity(5 + payload.len());
            frame.push(0);
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = futures::stream::iter([
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(
                    frame,
                ))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            Response::from_parts(parts, Body::new(http_body_util::StreamBody::new(frames)))
        }
        _ => Response::from_parts(parts, Body::from(payload)),
    }
}

/// An injected failure in the protocol of `service`.
fn injected_error(service: ServiceName, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let detail = format!("fault injected into the {service} service");
    match service.protocol() {
        Protocol::Http => Problem::new(status, detail).into_response(),
        Protocol::GraphQl => {
            let body = serde_json::json!({ "errors": [{ "message": detail, "extensions": { "code": "INJECTED_FAULT" } }] });
            (status, axum::Json(body)).into_response()
        }
        Protocol::Grpc => {
            // A trailers-only gRPC response: HTTP 200 with the status in headers.
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(grpc_code(status) as i32));
            if let Ok(message) = HeaderValue::from_str(&detail) {
                headers.insert("grpc-message", message);
            }
            response
        }
    }
}

/// The gRPC code closest to an HTTP status (the mapping of the gRPC HTTP/2
/// spec, extended to the statuses a fault is likely to name).
pub fn grpc_code(status: StatusCode) -> tonic::Code {
    match status.as_u16() {
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::Aborted,
        429 => tonic::Code::ResourceExhausted,
        501 => tonic::Code::Unimplemented,
        502 | 503 => tonic::Code::Unavailable,
        504 => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_every_bad_field() {
        let spec = FaultSpec {
            latency_ms: Some(-5.0),
            jitter_ms: Some(1.5),
            error_rate: Some(1.5),
            status: Some(200.0),
            reset_rate: Some(-0.1),
            hang: None,
            body: Some("empty".into()),
        };
        let errors = spec.validate().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "latency_ms",
                "jitter_ms",
                "error_rate",
                "reset_rate",
                "status",
                "body"
            ]
        );
    }

    #[test]
    fn a_valid_spec_builds_the_fault() {
        let spec = FaultSpec {
            latency_ms: Some(250.0),
            error_rate: Some(0.5),
            status: Some(500.0),
            ..FaultSpec::default()
        };
        let fault = spec.validate().expect("valid");
        assert_eq!(
            fault,
            Fault {
                latency_ms: 250,
                error_rate: 0.5,
                status: 500,
                ..Fault::default()
            }
        );
    }

    #[test]
    fn service_names_round_trip() {
        for s in ServiceName::ALL {
            assert_eq!(ServiceName::parse(s.as_str()), Some(s));
        }
        assert_eq!(ServiceName::parse("payments"), None);
    }
}
