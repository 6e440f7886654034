//! The web BFF end to end: REST, gRPC and GraphQL upstreams on real sockets.

use std::time::{Duration, Instant};

use demo_services::DemoStack;
use reqwest::header;
use serde_json::{Value, json};
use testkit::TestServer;

async fn setup(extra: &[(&str, &str)]) -> (DemoStack, TestServer, String) {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config_with(&stack, bff_web::SPEC, extra);
    let server = testkit::start_bff(config, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    (stack, server, token)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get(server: &TestServer, token: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http://127"),
        "leak: {text}"
    );
    (status, serde_json::from_str(&text).expect("json"))
}

#[tokio::test]
async fn the_rich_dashboard() {
    let (stack, server, token) = setup(&[]).await;
    let (status, body) = get(&server, &token, "/v1/dashboard").await;
    assert_eq!(status, 200, "{body}");
    let user = &stack.data().users()[0];
    assert_eq!(body["user"]["email"], user.email);
    assert!(
        body["user"]["addresses"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(body["user"]["preferences"]["notifications"]["orderUpdates"].is_boolean());
    assert_eq!(body["recommendations"].as_array().map(Vec::len), Some(10));
    let orders = body["recentOrders"].as_array().expect("orders");
    assert!(!orders.is_empty() && orders.len() <= 5);
    assert!(orders[0]["items"][0]["unitPriceMinor"].is_u64());
    assert_eq!(body["loyalty"]["tier"], user.loyalty.tier);
    assert_eq!(body["metadata"]["partialFailures"], 0);
}

#[tokio::test]
async fn the_product_page_aggregates_four_services_over_three_protocols() {
    let (stack, server, token) = setup(&[]).await;
    let product = stack
        .data()
        .products()
        .iter()
        .find(|p| p.rating_count > 0)
        .expect("reviewed product")
        .clone();
    stack.stats().reset();
    let (status, body) = get(&server, &token, &format!("/v1/products/{}", product.id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["product"]["id"], product.id.to_string());
    assert_eq!(body["product"]["name"], product.name);
    let price = stack.prices().get(&product.id).expect("price");
    assert_eq!(
        body["pricing"],
        json!({ "current": price.current, "original": price.original, "currency": price.currency, "discount": price.discount })
    );
    assert_eq!(body["reviews"]["total"], product.rating_count);
    assert!(
        body["reviews"]["items"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.len() <= 5)
    );
    let stock = stack.stock().get(&product.id).expect("stock");
    assert_eq!(body["inventory"]["available"], stock.available);
    assert_eq!(body["metadata"]["partialFailures"], 0);
    let stats = stack.stats().snapshot();
    let calls = |service: &str| -> u64 {
        stats
            .get(&demo_services::ServiceName::parse(service).expect("name"))
            .map_or(0, |m| m.values().sum())
    };
    assert_eq!(
        (
            calls("product"),
            calls("pricing"),
            calls("review"),
            calls("inventory")
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn sections_not_asked_for_are_null_and_not_fetched() {
    let (stack, server, token) = setup(&[]).await;
    let id = stack.data().products()[0].id;
    stack.stats().reset();
    let (status, body) = get(
        &server,
        &token,
        &format!("/v1/products/{id}?includeReviews=false&includeInventory=0"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["reviews"], &body["inventory"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        body["metadata"]["degraded"],
        json!([]),
        "not asked is not degraded"
    );
    let stats = stack.stats().snapshot();
    assert!(
        !stats.contains_key(&demo_services::ServiceName::Review)
            && !stats.contains_key(&demo_services::ServiceName::Inventory)
    );
}

#[tokio::test]
async fn invalid_product_requests_name_the_field() {
    let (_stack, server, token) = setup(&[]).await;
    let id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let cases = [
        ("/v1/products/not-a-uuid".to_owned(), vec!["productId"]),
        (
            format!("/v1/products/{id}?includeReviews=maybe"),
            vec!["includeReviews"],
        ),
        (
            "/v1/products/42?includeInventory=yes".to_owned(),
            vec!["productId", "includeInventory"],
        ),
        (format!("/v1/products/{id}?include=all"), vec!["include"]),
        ("/v1/products/%27%20OR%201=1".to_owned(), vec!["productId"]),
    ];
    for (path, fields) in cases {
        let (status, problem) = get(&server, &token, &path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        let got: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().expect("field"))
            .collect();
        assert_eq!(got, fields, "{path}");
    }
}

#[tokio::test]
async fn failed_pricing_is_an_error_object_and_the_page_still_renders() {
    let (stack, server, token) = setup(&[]).await;
    testkit::set_fault(&stack, "pricing", json!({ "error_rate": 1.0 })).await;
    let id = stack.data().products()[1].id;
    let (status, body) = get(&server, &token, &format!("/v1/products/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["pricing"], json!({ "error": "unavailable" }));
    assert_eq!(body["metadata"]["degraded"], json!(["pricing"]));
    assert_eq!(body["metadata"]["reasons"]["pricing"], "upstream_error");
}

#[tokio::test]
async fn an_unknown_product_is_404() {
    let (_stack, server, token) = setup(&[]).await;
    let (status, problem) = get(
        &server,
        &token,
        "/v1/products/00000000-0000-4000-8000-000000000000",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not_found");
}

#[tokio::test]
async fn a_failed_product_section_is_stale_when_cached_else_503() {
    let stack = testkit::start_demo().await;
    // The product is asked for on every page: its copy only stands in.
    let server = testkit::start_stand_in_only(&stack, bff_web::SPEC, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    let cached = stack.data().products()[2].id;
    let never = stack.data().products()[3].id;
    assert_eq!(
        get(&server, &token, &format!("/v1/products/{cached}"))
            .await
            .0,
        200
    );
    testkit::set_fault(&stack, "product", json!({ "reset_rate": 1.0 })).await;
    let (status, body) = get(&server, &token, &format!("/v1/products/{cached}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["stale"], json!(["product"]));
    assert_eq!(body["metadata"]["reasons"]["product"], "unavailable");
    let r = client()
        .get(server.url(&format!("/v1/products/{never}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn a_hanging_grpc_stream_is_cut_at_the_section_deadline() {
    let (stack, server, token) = setup(&[("BFF_DEADLINE_OPTIONAL", "500ms")]).await;
    testkit::set_fault(&stack, "inventory", json!({ "hang": true })).await;
    let id = stack.data().products()[4].id;
    let started = Instant::now();
    let (status, body) = get(&server, &token, &format!("/v1/products/{id}")).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(body["inventory"], Value::Null);
    assert_eq!(body["metadata"]["reasons"]["inventory"], "timeout");
    stack.faults().clear_all();
}

#[tokio::test]
async fn an_open_grpc_circuit_fails_fast() {
    let (stack, server, token) = setup(&[
        ("BFF_UPSTREAM_INVENTORY_BREAKER_MIN_CALLS", "2"),
        ("BFF_UPSTREAM_INVENTORY_OPEN_FOR", "30s"),
        ("BFF_UPSTREAM_INVENTORY_RETRIES", "0"),
    ])
    .await;
    testkit::set_fault(
        &stack,
        "inventory",
        json!({ "latency_ms": 300, "error_rate": 1.0 }),
    )
    .await;
    let id = stack.data().products()[5].id;
    for _ in 0..2 {
        let (_, body) = get(&server, &token, &format!("/v1/products/{id}")).await;
        assert_eq!(body["metadata"]["reasons"]["inventory"], "unavailable");
    }
    let started = Instant::now();
    let (_, body) = get(&server, &token, &format!("/v1/products/{id}")).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body["metadata"]["reasons"]["inventory"], "circuit_open");
}

#[tokio::test]
async fn mobile_tokens_are_not_accepted_here() {
    let (stack, server, _token) = setup(&[]).await;
    let mobile = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let r = client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(mobile)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
}
