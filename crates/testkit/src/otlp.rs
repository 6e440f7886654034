//! An OTLP receiver for tests and the load harness: what an OpenTelemetry
//! Collector would receive, over gRPC (`TraceService/Export`,
//! `MetricsService/Export`) and HTTP/protobuf (`POST /v1/traces`,
//! `POST /v1/metrics`) on one port, decoded and kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
pub use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric};
pub use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use prost::Message;

/// Which transport an export arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

#[derive(Debug, Default)]
struct Received {
    /// Whether whole exports are kept (tests) or only counted (the sink
    /// binary, which runs for as long as a compose stack does).
    keep: bool,
    /// Spans received per `service.name`.
    per_service: Mutex<std::collections::BTreeMap<String, u64>>,
    spans: Mutex<Vec<(Transport, ResourceSpans)>>,
    metrics: Mutex<Vec<(Transport, ResourceMetrics)>>,
    bytes: std::sync::atomic::AtomicU64,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Debug)]
struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.0.count(request.encoded_len());
        self.0.keep_spans(Transport::Grpc, request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.0.count(request.encoded_len());
        self.0.keep_metrics(Transport::Grpc, request);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Received {
    fn count(&self, bytes: usize) {
        self.bytes
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn keep_spans(&self, transport: Transport, request: ExportTraceServiceRequest) {
        {
            let mut per_service = self.per_service.lock();
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"))
                    .unwrap_or("unknown_service");
                let spans: usize = resource.scope_spans.iter().map(|s| s.spans.len()).sum();
                *per_service.entry(service.to_owned()).or_default() += spans as u64;
            }
        }
        if !self.keep {
            return;
        }
        let mut spans = self.spans.lock();
        spans.extend(request.resource_spans.into_iter().map(|r| (transport, r)));
    }

    fn keep_metrics(&self, transport: Transport, request: ExportMetricsServiceRequest) {
        if !self.keep {
            return;
        }
        let mut metrics = self.metrics.lock();
        metrics.extend(request.resource_metrics.into_iter().map(|r| (transport, r)));
    }
}

fn protobuf(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

async fn http_traces(State(received): State<Arc<Received>>, body: Bytes) -> Response {
    received.count(body.len());
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.keep_spans(Transport::Http, request);
            protobuf(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn http_metrics(State(received): State<Arc<Received>>, body: Bytes) -> Response {
    received.count(body.len());
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            received.keep_metrics(Transport::Http, request);
            protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

impl OtlpReceiver {
    /// Listens on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let received = Arc::new(Received {
            keep: true,
            ..Received::default()
        });
        let app = app(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// The endpoint to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far, with their resource.
    pub fn spans(&self) -> Vec<(Transport, ResourceSpans)> {
        self.received.spans.lock().clone()
    }

    /// The metrics received so far, with their resource.
    pub fn metrics(&self) -> Vec<(Transport, ResourceMetrics)> {
        self.received.metrics.lock().clone()
    }

    /// Bytes of export requests received.
    pub fn bytes(&self) -> u64 {
        self.received
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until `done` holds for what was received.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// OTLP over gRPC and HTTP/protobuf on one router, and `GET /spans`: the
/// spans received per `service.name`, as a JSON object.
fn app(received: Arc<Received>) -> Router {
    let grpc = Grpc(received.clone());
    tonic::service::Routes::new(TraceServiceServer::new(grpc.clone()))
        .add_service(MetricsServiceServer::new(grpc))
        .into_axum_router()
        .merge(
            Router::new()
                .route("/v1/traces", post(http_traces))
                .route("/v1/metrics", post(http_metrics))
                .route("/spans", axum::routing::get(per_service))
                .with_state(received),
        )
}

async fn per_service(State(received): State<Arc<Received>>) -> Response {
    let counts = received.per_service.lock().clone();
    axum::Json(counts).into_response()
}

/// Serves OTLP on every listener until the process ends, counting spans per
/// service (`GET /spans`) and keeping nothing else: the `otlp-sink` binary,
/// the collector's stand-in where no collector image can be had.
pub async fn serve_counting(listeners: Vec<tokio::net::TcpListener>) -> std::io::Result<()> {
    let app = app(Arc::new(Received::default()));
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        servers.spawn(axum::serve(listener, app.clone()).into_future());
    }
    while let Some(served) = servers.join_next().await {
        served.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// The string value of attribute `key` among `attributes`.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}
