//! The upstream stack over real sockets: propagation of the request id,
//! trace context and remaining budget (REST header, gRPC `grpc-timeout`),
//! path encoding, and the classification of answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bff_telemetry::TraceContext;
use bff_upstream::budget::{self, Budget, Criticality};
use bff_upstream::{
    CallContext, Failure, Protocol, Registry, UpstreamDecl, UpstreamPolicy, UpstreamSettings,
};
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

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn registry(name: &'static str, protocol: Protocol, url: String) -> Registry {
    let settings = UpstreamSettings {
        decl: UpstreamDecl {
            name,
            protocol,
            default_url: "http://127.0.0.1:1",
        },
        url: url.parse().expect("url"),
        policy: UpstreamPolicy {
            retry: bff_upstream::RetryConfig {
                max_retries: 0,
                ..Default::default()
            },
            ..UpstreamPolicy::default()
        },
    };
    Registry::build(&[settings], Duration::from_millis(300)).expect("registry")
}

fn assert_propagated(headers: &HeaderMap) {
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
async fn rest_calls_carry_ids_trace_and_the_remaining_budget_and_encode_path_segments() {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(get({
        let seen = seen.clone();
        move |uri: http::Uri, headers: HeaderMap| async move {
            seen.lock().expect("lock").push((uri.to_string(), headers));
            axum::Json(serde_json::json!({ "ok": true }))
        }
    }));
    let addr = serve(app).await;
    let client = registry("echo", Protocol::Rest, format!("http://{addr}/base/"))
        .rest("echo")
        .expect("declared");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let body: serde_json::Value = budget::scope(
        Budget::new(deadline, Criticality::Critical),
        client.get_json(
            "echo",
            &context(),
            &["items", "a/../b?c"],
            &[("q", "x y")],
            None,
        ),
    )
    .await
    .expect("call");
    assert_eq!(body["ok"], true);

    let seen = seen.lock().expect("lock");
    let (uri, headers) = &seen[0];
    assert_eq!(
        uri, "/base/items/a%2F..%2Fb%3Fc?q=x+y",
        "ids cannot change the path"
    );
    assert_propagated(headers);
    let budget_ms: u64 = headers["x-request-deadline-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("milliseconds");
    assert!(
        (200..=300).contains(&budget_ms),
        "the section's budget, not the 2 s policy timeout: {budget_ms} ms"
    );
}

#[tokio::test]
async fn grpc_calls_carry_the_same_metadata_and_grpc_timeout_and_read_trailers_only_statuses() {
    let seen: Seen = Arc::default();
    // A real HTTP/2 server answering like a gRPC server that does not
    // know the product (a trailers-only NOT_FOUND).
    let app = Router::new().route(
        "/catalog.v1.ProductService/GetProduct",
        post({
            let seen = seen.clone();
            move |uri: http::Uri, headers: HeaderMap| async move {
                seen.lock().expect("lock").push((uri.to_string(), headers));
                (
                    [
                        ("content-type", "application/grpc"),
                        ("grpc-status", "5"),
                        ("grpc-message", "no such product"),
                    ],
                    "",
                )
            }
        }),
    );
    let addr = serve(app).await;
    let client = registry("product", Protocol::Grpc, format!("http://{addr}"))
        .grpc("product")
        .expect("declared");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
    let result: Result<bff_proto::catalog::v1::Product, _> = budget::scope(
        Budget::new(deadline, Criticality::Critical),
        client.unary(
            "/catalog.v1.ProductService/GetProduct",
            "GetProduct",
            &context(),
            &bff_proto::catalog::v1::GetProductRequest { id: "x".into() },
            true,
        ),
    )
    .await;
    assert_eq!(result.expect_err("not found").failure, Failure::NotFound);
    let seen = seen.lock().expect("lock");
    let (_, headers) = &seen[0];
    assert_propagated(headers);
    let timeout = headers["grpc-timeout"].to_str().expect("ascii");
    let millis: u64 = timeout
        .strip_suffix('m')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("milliseconds expected, got {timeout}"));
    assert!((150..=250).contains(&millis), "{timeout}");
}

#[tokio::test]
async fn refused_is_unavailable_404_is_not_found_and_bad_bodies_are_invalid() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let client = registry("gone", Protocol::Rest, format!("http://{closed}"))
        .rest("gone")
        .expect("declared");
    let err = client
        .get_json::<serde_json::Value>("x", &context(), &["x"], &[], None)
        .await
        .expect_err("refused");
    assert_eq!(err.failure, Failure::Unavailable);

    let app = Router::new()
        .route("/malformed", get(|| async { "{\"id\": " }))
        .route(
            "/graphql",
            post(|| async {
                axum::Json(serde_json::json!({"data": null, "errors": [{"message": "boom"}]}))
            }),
        );
    let addr = serve(app).await;
    let registry = registry("svc", Protocol::Rest, format!("http://{addr}"));
    let client = registry.rest("svc").expect("declared");
    let err = client
        .get_json::<serde_json::Value>("x", &context(), &["nothing"], &[], None)
        .await
        .expect_err("404");
    assert_eq!(err.failure, Failure::NotFound);
    let err = client
        .get_json::<serde_json::Value>("x", &context(), &["malformed"], &[], None)
        .await
        .expect_err("malformed");
    assert_eq!(err.failure, Failure::InvalidResponse);
    assert!(
        registry.graphql("svc").is_err(),
        "declared as REST, not GraphQL"
    );
    let graphql = self::registry("gql", Protocol::GraphQl, format!("http://{addr}/graphql"))
        .graphql("gql")
        .expect("declared");
    let err = graphql
        .query::<_, serde_json::Value>("q", &context(), "{ x }", serde_json::json!({}))
        .await
        .expect_err("errors inside a 200");
    assert_eq!(err.failure, Failure::GraphQl);
    assert!(err.failure.counts_against_circuit());
}

#[tokio::test]
async fn a_hedged_read_is_answered_by_the_second_copy_when_the_first_is_slow() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let slow_next = Arc::new(AtomicBool::new(false));
    let app = Router::new().route(
        "/item",
        get({
            let (calls, slow_next) = (calls.clone(), slow_next.clone());
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if slow_next.swap(false, Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                axum::Json(serde_json::json!({ "ok": true }))
            }
        }),
    );
    let addr = serve(app).await;
    let settings = UpstreamSettings {
        decl: UpstreamDecl {
            name: "hedged",
            protocol: Protocol::Rest,
            default_url: "http://127.0.0.1:1",
        },
        url: format!("http://{addr}").parse().expect("url"),
        policy: UpstreamPolicy {
            hedge_percentile: Some(90),
            coalesce: false,
            ..UpstreamPolicy::default()
        },
    };
    let client = Registry::build(&[settings], Duration::from_millis(300))
        .expect("registry")
        .rest("hedged")
        .expect("declared");
    let ctx = context();
    let read = || client.get_json::<serde_json::Value>("item", &ctx, &["item"], &[], None);
    // Latencies of one histogram period, then the period turns over.
    for _ in 0..30 {
        read().await.expect("warm-up");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    calls.store(0, Ordering::SeqCst);
    slow_next.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let body = read().await.expect("the hedge answers");
    assert_eq!(body["ok"], true);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not the 5 s of the first copy: {:?}",
        started.elapsed()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the original and one hedge"
    );
}
