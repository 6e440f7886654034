//! The partner BFF end to end.

use demo_services::{DemoStack, ServiceName};
use reqwest::header;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::TestServer;

async fn setup() -> (DemoStack, TestServer, String) {
    setup_with(&[] as &[(String, String)]).await
}

async fn setup_with(extra: &[(String, String)]) -> (DemoStack, TestServer, String) {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config_with(&stack, bff_partner::SPEC, extra);
    let server = testkit::start_bff(config, bff_partner::app).await;
    let token = testkit::partner_token(&stack, "partner-acme");
    (stack, server, token)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn ids(stack: &DemoStack, n: usize) -> Vec<String> {
    stack.data().products()[..n]
        .iter()
        .map(|p| p.id.to_string())
        .collect()
}

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test]
async fn v1_lists_products_and_missing_ids_and_announces_its_sunset() {
    let (stack, server, token) = setup().await;
    let mut wanted = ids(&stack, 2);
    wanted.push(UNKNOWN.to_owned());
    let r = client()
        .get(server.url(&format!("/v1/products?ids={}", wanted.join(","))))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["deprecation"]
            .to_str()
            .expect("ascii")
            .starts_with('@')
    );
    assert!(
        r.headers()["sunset"]
            .to_str()
            .expect("ascii")
            .ends_with("GMT")
    );
    assert_eq!(
        r.headers()[header::LINK],
        "</v2/products>; rel=\"successor-version\""
    );
    let body: Value = r.json().await.expect("json");
    let products = body["products"].as_array().expect("products");
    assert_eq!(products.len(), 2);
    assert_eq!(products[0]["id"], wanted[0], "request order is kept");
    let price = stack
        .prices()
        .get(&stack.data().products()[0].id)
        .expect("price");
    assert_eq!(products[0]["price"]["amount"], price.current);
    assert!(products[0]["stock"]["inStock"].is_boolean());
    assert_eq!(body["missingIds"], json!([UNKNOWN]));
}

#[tokio::test]
async fn v2_has_the_newer_shape_and_no_deprecation() {
    let (stack, server, token) = setup().await;
    let wanted = ids(&stack, 3);
    let r = client()
        .get(server.url(&format!("/v2/products?ids={}", wanted.join(","))))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("deprecation").is_none());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    assert!(body["data"][0]["pricing"]["currentMinor"].is_u64());
    assert_eq!(
        (
            body["meta"]["requested"].as_u64(),
            body["meta"]["returned"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(body["meta"]["partialFailures"], 0);
}

#[tokio::test]
async fn the_unversioned_path_negotiates_with_api_version() {
    let (stack, server, token) = setup().await;
    let path = format!("/products?ids={}", ids(&stack, 1)[0]);
    for (version, key, status) in [
        (None, Some("data"), 200),
        (Some("2"), Some("data"), 200),
        (Some("1"), Some("products"), 200),
        (Some("3"), None, 400),
    ] {
        let mut request = client().get(server.url(&path)).bearer_auth(&token);
        if let Some(v) = version {
            request = request.header("API-Version", v);
        }
        let r = request.send().await.expect("request");
        assert_eq!(r.status().as_u16(), status, "{version:?}");
        let body: Value = r.json().await.expect("json");
        match key {
            Some(key) => assert!(body.get(key).is_some(), "{version:?}: {body}"),
            None => assert_eq!(body["errors"][0]["field"], "API-Version"),
        }
    }
}

#[tokio::test]
async fn fifty_ids_cost_exactly_one_call_per_upstream() {
    let (stack, server, token) = setup().await;
    let wanted = ids(&stack, 50);
    stack.stats().reset();
    let r = client()
        .get(server.url(&format!("/v2/products?ids={}", wanted.join(","))))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["meta"]["returned"], 50);
    let stats = stack.stats();
    assert_eq!(
        stats.count(
            ServiceName::Product,
            "/catalog.v1.ProductService/BatchGetProducts"
        ),
        1
    );
    assert_eq!(
        stats.count(
            ServiceName::Inventory,
            "/inventory.v1.InventoryService/BatchGetStock"
        ),
        1
    );
    assert_eq!(stats.count(ServiceName::Pricing, "POST /graphql"), 1);
    let total: u64 = stats.snapshot().values().flat_map(|m| m.values()).sum();
    assert_eq!(total, 3, "nothing else was called: {:?}", stats.snapshot());
}

#[tokio::test]
async fn bad_id_lists_are_400_naming_the_field() {
    let (stack, server, token) = setup().await;
    let many = vec![ids(&stack, 1)[0].clone(); 51].join(",");
    let cases = [
        ("/v1/products".to_owned(), "ids"),
        ("/v1/products?ids=".to_owned(), "ids"),
        (format!("/v2/products?ids={many}"), "ids"),
        (
            format!("/v2/products?ids={},not-a-uuid", ids(&stack, 1)[0]),
            "ids[1]",
        ),
        ("/v2/products?ids=1&limit=5".to_owned(), "limit"),
    ];
    for (path, field) in cases {
        let r = client()
            .get(server.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_catalog_scope_is_required() {
    let (stack, server, _token) = setup().await;
    let path = format!("/v2/products?ids={}", ids(&stack, 1)[0]);
    let hooli = testkit::partner_token(&stack, "partner-hooli");
    let r = client()
        .get(server.url(&path))
        .bearer_auth(hooli)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let user = testkit::user_token(&stack, "user0001", "bff-web", None);
    let r = client()
        .get(server.url(&path))
        .bearer_auth(user)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401, "a web token is for another audience");
}

#[tokio::test]
async fn failed_pricing_is_partial_and_failed_products_are_stale_or_503() {
    // Every batch reaches the upstreams: the copies only stand in.
    let (stack, server, token) = setup_with(&testkit::stand_in_only(bff_partner::SPEC)).await;
    let first = ids(&stack, 2).join(",");
    let never = ids(&stack, 4)[2..].join(",");
    let url = |ids: &str| server.url(&format!("/v2/products?ids={ids}"));
    assert_eq!(
        client()
            .get(url(&first))
            .bearer_auth(&token)
            .send()
            .await
            .expect("warm")
            .status(),
        200
    );

    stack.faults().set(
        ServiceName::Pricing,
        demo_services::Fault {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let body: Value = client()
        .get(url(&first))
        .bearer_auth(&token)
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(body["meta"]["reasons"]["pricing"], "upstream_error");
    assert_eq!(
        body["meta"]["stale"],
        json!(["pricing"]),
        "served from the copy of the first request"
    );

    stack.faults().set(
        ServiceName::Product,
        demo_services::Fault {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let r = client()
        .get(url(&first))
        .bearer_auth(&token)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["meta"]["stale"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("products")))
    );
    let r = client()
        .get(url(&never))
        .bearer_auth(&token)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn v1_announces_its_deprecation_on_errors_too_and_calls_are_counted_per_version() {
    let (_stack, server, token) = setup().await;
    let bad = client()
        .get(server.url("/v1/products?ids=nope"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["deprecation"], "@1788220800");
    assert_eq!(bad.headers()["sunset"], "Thu, 01 Jul 2027 00:00:00 GMT");
    assert_eq!(
        bad.headers()[header::LINK],
        "</v2/products>; rel=\"successor-version\""
    );
    let v2 = client()
        .get(server.url("/v2/products?ids=nope"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert!(v2.headers().get("deprecation").is_none());
    let metrics = server.get_text("/metrics").await;
    for version in ["v1", "v2"] {
        let series = format!(
            r#"bff_api_version_calls_total{{bff="bff-partner",version="{version}",client="partner-acme"}}"#
        );
        assert!(metrics.contains(&series), "{series} in /metrics");
    }
}
