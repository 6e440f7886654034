//! The fragment cache seen from outside one bff-web process (no Redis):
//! a burst on a cold product is one upstream load, per-user fragments stay
//! with their user, responses say how they may be reused, a price change
//! from the pricing service's feed evicts only the price, and an operator
//! can purge by tag. Upstream calls are counted at the upstream (`/stats`).

use std::time::{Duration, Instant};

use demo_services::{DemoStack, ServiceName};
use serde_json::{Value, json};
use testkit::TestServer;

const ADMIN_TOKEN: &str = "an-admin-token-of-at-least-32-characters";

async fn start(stack: &DemoStack) -> TestServer {
    let env = [
        ("BFF_CACHE_PRODUCT_FRESH", "60s"),
        ("BFF_CACHE_PRICE_FRESH", "60s"),
        ("BFF_CACHE_STOCK_FRESH", "60s"),
        ("BFF_CACHE_REVIEWS_FRESH", "60s"),
        ("BFF_CACHE_USER_FRESH", "60s"),
        ("BFF_CACHE_ORDERS_FRESH", "60s"),
        ("BFF_CACHE_RECOMMENDATIONS_FRESH", "60s"),
        // The cache alone must make a burst one load.
        ("BFF_UPSTREAM_ALL_COALESCE", "false"),
        // A thousand requests at once on a cold replica: here the cache is
        // under test, not admission (which would refuse most of them).
        ("BFF_MAX_IN_FLIGHT", "off"),
        ("BFF_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let config = testkit::bff_config_with(stack, bff_web::SPEC, &env);
    testkit::start_bff(config, bff_web::app).await
}

async fn get(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

fn product_calls(stack: &DemoStack) -> u64 {
    stack.stats().count(
        ServiceName::Product,
        "/catalog.v1.ProductService/BatchGetProducts",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_a_cold_product_are_one_upstream_load() {
    let stack = testkit::start_demo().await;
    let server = start(&stack).await;
    let token = testkit::user_token(&stack, "user0004", "bff-web", None);
    let path = format!("/v1/products/{}", stack.data().products()[3].id);
    stack.stats().reset();

    // One HTTP/2 connection carries the whole burst.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let requests = (0..1000).map(|_| {
        let request = client.get(server.url(&path)).bearer_auth(&token).send();
        async move {
            let response = request.await.expect("request");
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["metadata"]["partialFailures"], 0, "{body}");
        }
    });
    futures::future::join_all(requests).await;
    // Reviews are a plain REST call (no batch loader to merge the burst),
    // so this count is the cache's single flight alone.
    assert_eq!(
        stack.stats().count(ServiceName::Review, "GET /reviews"),
        1,
        "one reviews load"
    );
    assert_eq!(product_calls(&stack), 1, "one product load");
    assert_eq!(
        stack.stats().count(ServiceName::Pricing, "POST /graphql"),
        1,
        "one price load"
    );
    let metrics = server.get_text("/metrics").await;
    for line in [
        r#"bff_cache_lookups_total{section="product",result="hit"}"#,
        r#"bff_cache_lookups_total{section="product",result="miss"}"#,
        r#"bff_cache_fragments_total{kind="product",result="hit",tier="local"}"#,
        // (Counts are per process, shared by this file's tests: the
        // upstream's own count above is the one that must be 1.)
        r#"bff_cache_loads_total{kind="product",trigger="miss",source="upstream"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
}

#[tokio::test]
async fn a_per_user_fragment_is_never_served_to_another_subject() {
    let stack = testkit::start_demo().await;
    let server = start(&stack).await;
    let users = stack.data().users();
    let (ada, bob) = (&users[5], &users[6]);
    stack.stats().reset();
    for user in [ada, bob, ada, bob] {
        let token = testkit::user_token(&stack, &user.username, "bff-web", None);
        let response = get(&server, &token, "/v1/dashboard").await;
        assert_eq!(response.status(), 200);
        let cache_control = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            cache_control.starts_with("private, max-age="),
            "per-user data is private: {cache_control}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["user"]["id"], user.id.to_string());
        assert_eq!(body["user"]["username"], user.username);
    }
    assert_eq!(
        stack
            .stats()
            .count(ServiceName::User, "GET /users/{user_id}"),
        2,
        "each user's profile was loaded once and then served from the cache"
    );
}

#[tokio::test]
async fn shared_pages_are_public_for_their_freshness_and_price_changes_evict_only_the_price() {
    let stack = testkit::start_demo().await;
    let server = start(&stack).await;
    let token = testkit::user_token(&stack, "user0007", "bff-web", None);
    let id = stack.data().products()[11].id;
    let path = format!("/v1/products/{id}");
    // The feed is followed in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.stats().reset();

    let first = get(&server, &token, &path).await;
    let cache_control = first.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        ["public, max-age=60", "public, max-age=59"].contains(&cache_control.as_str()),
        "{cache_control}"
    );
    let changed = reqwest::Client::new()
        .put(format!("{}/prices/{id}", stack.control_url()))
        .json(&json!({ "current": 1234 }))
        .send()
        .await
        .expect("control API");
    assert_eq!(changed.status(), 200);
    let started = Instant::now();
    loop {
        let body: Value = get(&server, &token, &path)
            .await
            .json()
            .await
            .expect("json");
        if body["pricing"]["current"] == 1234 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the price change was seen within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(product_calls(&stack), 1, "the product stayed cached");
}

#[tokio::test]
async fn an_operator_purges_every_fragment_of_a_product_by_tag() {
    let stack = testkit::start_demo().await;
    let server = start(&stack).await;
    let token = testkit::user_token(&stack, "user0008", "bff-web", None);
    let id = stack.data().products()[12].id;
    let path = format!("/v1/products/{id}");
    stack.stats().reset();
    get(&server, &token, &path).await;
    get(&server, &token, &path).await;
    assert_eq!(product_calls(&stack), 1);

    let purge = |bearer: Option<&'static str>, body: Value| {
        let mut request = reqwest::Client::new()
            .post(server.url("/admin/cache/purge"))
            .json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let tag = json!({ "tags": [format!("product:{id}")] });
    assert_eq!(purge(None, tag.clone()).await.expect("purge").status(), 401);
    assert_eq!(
        purge(
            Some("not-the-admin-token-but-long-enough-anyway"),
            tag.clone()
        )
        .await
        .expect("purge")
        .status(),
        403
    );
    let bad = purge(Some(ADMIN_TOKEN), json!({ "tags": [""] }))
        .await
        .expect("purge");
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.headers()["content-type"],
        "application/problem+json",
        "bad input is a problem"
    );
    assert_eq!(product_calls(&stack), 1, "refused purges purge nothing");

    assert_eq!(
        purge(Some(ADMIN_TOKEN), tag).await.expect("purge").status(),
        200
    );
    get(&server, &token, &path).await;
    assert_eq!(product_calls(&stack), 2, "the product was loaded again");
}

#[tokio::test]
async fn a_failed_section_is_served_from_its_stand_in_and_counted() {
    let stack = testkit::start_demo().await;
    // Fragments kept only to stand in for failures.
    let server = testkit::start_stand_in_only(&stack, bff_web::SPEC, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0009", "bff-web", None);
    let path = format!("/v1/products/{}", stack.data().products()[13].id);
    let fresh: Value = get(&server, &token, &path)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fresh["metadata"]["partialFailures"], 0);

    testkit::set_fault(&stack, "pricing", json!({ "error_rate": 1 })).await;
    let response = get(&server, &token, &path).await;
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "a partial answer is not to be reused"
    );
    let degraded: Value = response.json().await.expect("json");
    testkit::clear_fault(&stack, "pricing").await;
    assert_eq!(
        degraded["metadata"]["stale"],
        json!(["pricing"]),
        "{degraded}"
    );
    assert_eq!(degraded["pricing"], fresh["pricing"]);

    let metrics = server.get_text("/metrics").await;
    for line in [
        r#"bff_cache_lookups_total{section="pricing",result="stale"}"#,
        r#"bff_cache_fragments_total{kind="price",result="stale",tier="local"}"#,
        r#"bff_cache_stale_served_total{kind="price",reason="upstream_error"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
}
