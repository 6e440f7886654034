//! A minimal OTLP/HTTP receiver for the telemetry-cost scenario: accepts
//! `POST /v1/traces` and `POST /v1/metrics`, counts what arrives, answers
//! with an empty (valid) protobuf response. It decodes nothing, so what is
//! measured is the BFF's cost of exporting, not a collector's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// What the sink received.
#[derive(Debug, Default)]
pub struct Received {
    /// Export requests for spans.
    pub trace_requests: AtomicU64,
    /// Export requests for metrics.
    pub metric_requests: AtomicU64,
    /// Bytes of request bodies.
    pub bytes: AtomicU64,
}

/// Listens on `127.0.0.1:0`; returns the address and the counters.
pub async fn start() -> Result<(SocketAddr, Arc<Received>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("OTLP sink: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let received = Arc::new(Received::default());
    let counters = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let counters = counters.clone();
                    async move { Ok::<_, Infallible>(handle(request, &counters).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, received))
}

async fn handle(request: Request<Incoming>, received: &Received) -> Response<Full<Bytes>> {
    let counter = match request.uri().path() {
        "/v1/traces" => &received.trace_requests,
        "/v1/metrics" => &received.metric_requests,
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
    };
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let size = body.map_or(0, |b| b.len() as u64);
    counter.fetch_add(1, Ordering::Relaxed);
    received.bytes.fetch_add(size, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::new()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}
