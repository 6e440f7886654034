//! Every upstream call carries the request id and the trace context, over
//! a real socket (REST) and in gRPC metadata.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bff_telemetry::TraceContext;
use bff_upstream::{CallContext, Failure, HttpClient, RestClient, Upstream, UpstreamPolicy, grpc};
use http::{HeaderMap, HeaderValue};

fn context() -> CallContext {
    let mut incoming = HeaderMap::new();
    incoming.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    incoming.insert("tracestate", HeaderValue::from_static("vendor=1"));
    CallContext {
        request_id: HeaderValue::from_static("req-42"),
        trace: TraceContext::from_headers(&incoming),
    }
}

#[tokio::test]
async fn rest_calls_send_request_id_and_trace_context_and_encode_path_segments() {
    let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
    let app = Router::new().fallback(get({
        let seen = seen.clone();
        move |uri: http::Uri, headers: HeaderMap| async move {
            seen.lock().expect("lock").push((uri.to_string(), headers));
            axum::Json(serde_json::json!({ "ok": true }))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = HttpClient::new(Duration::from_secs(1)).expect("client");
    let upstream = Upstream::new("echo", UpstreamPolicy::default());
    let client = RestClient::new(
        http,
        format!("http://{addr}/base/").parse().expect("url"),
        upstream,
    );
    let body: serde_json::Value = client
        .get_json("echo", &context(), &["items", "a/../b?c"], &[("q", "x y")])
        .await
        .expect("call");
    assert_eq!(body["ok"], true);

    let seen = seen.lock().expect("lock");
    let (uri, headers) = &seen[0];
    assert_eq!(
        uri, "/base/items/a%2F..%2Fb%3Fc?q=x+y",
        "ids cannot change the path"
    );
    assert_eq!(headers["x-request-id"], "req-42");
    let traceparent = headers["traceparent"].to_str().expect("ascii");
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("b7ad6b7169203331"),
        "a new span id for the call"
    );
    assert_eq!(headers["tracestate"], "vendor=1");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_a_404_is_not_found() {
    let http = HttpClient::new(Duration::from_millis(300)).expect("client");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let client = RestClient::new(
        http.clone(),
        format!("http://{closed}").parse().expect("url"),
        Upstream::new("gone", UpstreamPolicy::default()),
    );
    let err = client
        .get_json::<serde_json::Value>("x", &context(), &["x"], &[])
        .await
        .expect_err("refused");
    assert_eq!(err.failure, Failure::Unavailable);

    let app = Router::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = RestClient::new(
        http,
        format!("http://{addr}").parse().expect("url"),
        Upstream::new("empty", UpstreamPolicy::default()),
    );
    let err = client
        .get_json::<serde_json::Value>("x", &context(), &["nothing"], &[])
        .await
        .expect_err("404");
    assert_eq!(err.failure, Failure::NotFound);
}

#[test]
fn grpc_requests_carry_the_same_metadata_and_a_deadline() {
    let request = grpc::request((), &context(), Duration::from_millis(250));
    let metadata = request.metadata();
    assert_eq!(
        metadata
            .get("x-request-id")
            .map(|v| v.to_str().expect("ascii")),
        Some("req-42")
    );
    assert!(metadata.get("traceparent").is_some_and(|v| {
        v.to_str()
            .expect("ascii")
            .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
    }));
    assert_eq!(
        metadata
            .get("tracestate")
            .map(|v| v.to_str().expect("ascii")),
        Some("vendor=1")
    );
    assert_eq!(
        metadata
            .get("grpc-timeout")
            .map(|v| v.to_str().expect("ascii")),
        Some("250000u")
    );
}
