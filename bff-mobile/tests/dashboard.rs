//! The mobile dashboard end to end: demo services on real sockets, the BFF
//! on a free port, faults injected through the control API.

use std::time::{Duration, Instant};

use demo_services::{DemoStack, ServiceName};
use reqwest::header;
use serde_json::{Value, json};
use testkit::TestServer;

async fn setup(extra: &[(&str, &str)]) -> (DemoStack, TestServer) {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config_with(&stack, bff_mobile::SPEC, extra);
    let server = testkit::start_bff(config, bff_mobile::app).await;
    (stack, server)
}

/// A BFF whose dashboards all reach the upstreams: the cached copies only
/// stand in for failures.
async fn setup_stand_in_only() -> (DemoStack, TestServer) {
    let stack = testkit::start_demo().await;
    let server = testkit::start_stand_in_only(&stack, bff_mobile::SPEC, bff_mobile::app).await;
    (stack, server)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_gzip()
        .no_brotli()
        .build()
        .expect("client")
}

async fn dashboard(server: &TestServer, token: &str) -> reqwest::Response {
    client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

fn assert_no_internals(body: &str) {
    for leak in [
        "127.0.0.1",
        "http://",
        "localhost",
        "reqwest",
        "tonic",
        "panicked",
    ] {
        assert!(!body.contains(leak), "the body leaks {leak:?}: {body}");
    }
}

#[tokio::test]
async fn the_dashboard_is_slim_and_complete() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let response = dashboard(&server, &token).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key(header::ETAG));
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("json");
    let user = &stack.data().users()[0];
    assert_eq!(body["user"]["id"], user.id.to_string());
    assert_eq!(body["user"]["name"], user.display_name);
    assert!(
        body["user"]["avatarUrl"]
            .as_str()
            .is_some_and(|u| u.ends_with("?w=96&q=75"))
    );
    assert!(body["user"]["preferences"]["currency"].is_string());
    assert!(
        body["user"].get("addresses").is_none(),
        "only what the phone shows"
    );
    let orders = body["recentOrders"].as_array().expect("orders");
    assert!(!orders.is_empty() && orders.len() <= 5);
    assert!(orders[0]["totalMinor"].is_u64() && orders[0]["itemCount"].is_u64());
    let recs = body["recommendations"].as_array().expect("recommendations");
    assert_eq!(recs.len(), 3);
    assert_eq!(body["metadata"]["partialFailures"], 0);
    assert_eq!(body["metadata"]["degraded"], json!([]));
    assert!(body["metadata"]["timestamp"].is_string());
}

#[tokio::test]
async fn the_body_is_at_most_30_percent_of_the_upstream_bytes() {
    let (stack, server) = setup(&[]).await;
    let user = &stack.data().users()[0];
    let token = testkit::user_token(&stack, &user.username, "bff-mobile", None);
    let bff = dashboard(&server, &token)
        .await
        .bytes()
        .await
        .expect("body")
        .len();
    let mut upstream = 0;
    for url in [
        format!("{}/users/{}", stack.url(ServiceName::User), user.id),
        format!(
            "{}/orders?user_id={}&limit=5",
            stack.url(ServiceName::Order),
            user.id
        ),
        format!(
            "{}/recommendations?user_id={}&limit=3",
            stack.url(ServiceName::Recommendation),
            user.id
        ),
    ] {
        upstream += client()
            .get(url)
            .send()
            .await
            .expect("upstream")
            .bytes()
            .await
            .expect("body")
            .len();
    }
    let ratio = bff as f64 / upstream as f64;
    assert!(
        ratio <= 0.30,
        "mobile body {bff} B is {:.1}% of the upstream {upstream} B",
        ratio * 100.0
    );

    // Compressed, it is smaller still.
    let br = client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(&token)
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await
        .expect("request");
    assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
    let compressed = br.bytes().await.expect("body").len();
    assert!(compressed < bff, "br {compressed} B < identity {bff} B");
}

#[tokio::test]
async fn etag_and_304() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0002", "bff-mobile", None);
    let first = dashboard(&server, &token).await;
    let tag = first.headers()[header::ETAG]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(tag.starts_with('"'), "strong: {tag}");
    let again = client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(&token)
        .header(header::IF_NONE_MATCH, &tag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], tag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());

    // A price change in a recommendation would change the content; a change
    // of device density changes the image URLs, so the tag too.
    let other = client()
        .get(server.url("/v1/dashboard?dpr=3"))
        .bearer_auth(&token)
        .header(header::IF_NONE_MATCH, &tag)
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 200);
    assert_ne!(other.headers()[header::ETAG], tag.as_str());
}

#[tokio::test]
async fn br_is_preferred_and_gzip_is_the_fallback() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0003", "bff-mobile", None);
    for (accept, expected) in [
        ("gzip, br", Some("br")),
        ("gzip", Some("gzip")),
        ("identity", None),
    ] {
        let r = client()
            .get(server.url("/v1/dashboard"))
            .bearer_auth(&token)
            .header(header::ACCEPT_ENCODING, accept)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().expect("ascii")),
            expected,
            "{accept}"
        );
        let vary = r
            .headers()
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        assert!(vary.contains("accept-encoding"), "vary: {vary}");
    }
}

#[tokio::test]
async fn failed_optional_sections_give_a_partial_200() {
    let (stack, server) = setup(&[("BFF_DEADLINE_OPTIONAL", "400ms")]).await;
    let token = testkit::user_token(&stack, "user0004", "bff-mobile", None);
    testkit::set_fault(&stack, "order", json!({ "error_rate": 1.0, "status": 500 })).await;
    testkit::set_fault(&stack, "recommendation", json!({ "latency_ms": 2000 })).await;
    let started = Instant::now();
    let response = dashboard(&server, &token).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "bounded by the optional deadline"
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["recentOrders"], Value::Null);
    assert_eq!(body["recommendations"], Value::Null);
    assert_eq!(body["metadata"]["partialFailures"], 2);
    assert_eq!(
        body["metadata"]["degraded"],
        json!(["orders", "recommendations"])
    );
    assert_eq!(
        body["metadata"]["reasons"],
        json!({ "orders": "upstream_error", "recommendations": "timeout" })
    );
    assert!(body["user"]["id"].is_string());
}

#[tokio::test]
async fn a_failed_critical_section_is_served_stale_else_503() {
    let (stack, server) = setup_stand_in_only().await;
    let cached = testkit::user_token(&stack, "user0005", "bff-mobile", None);
    let never_seen = testkit::user_token(&stack, "user0006", "bff-mobile", None);
    assert_eq!(
        dashboard(&server, &cached).await.status(),
        200,
        "warms the cache"
    );

    testkit::set_fault(&stack, "user", json!({ "error_rate": 1.0 })).await;
    let response = dashboard(&server, &cached).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"]["id"], stack.data().users()[4].id.to_string());
    assert_eq!(body["metadata"]["stale"], json!(["user"]));
    assert_eq!(body["metadata"]["degraded"], json!(["user"]));
    assert_eq!(body["metadata"]["reasons"]["user"], "upstream_error");

    let response = dashboard(&server, &never_seen).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let text = response.text().await.expect("body");
    assert_no_internals(&text);
    let problem: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(problem["status"], 503);
    assert!(problem["requestId"].is_string() && problem["traceId"].is_string());
}

#[tokio::test]
async fn a_hanging_upstream_never_holds_the_request_past_its_deadline() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0007", "bff-mobile", None);
    testkit::set_fault(&stack, "user", json!({ "hang": true })).await;
    testkit::set_fault(&stack, "order", json!({ "hang": true })).await;
    let started = Instant::now();
    let response = dashboard(&server, &token).await;
    let took = started.elapsed();
    // Critical deadline 500 ms, optional 2 s, request 2.5 s: the response
    // comes when the last running section gives up.
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert_eq!(response.status(), 503);
    testkit::clear_fault(&stack, "user").await;
    testkit::clear_fault(&stack, "order").await;
}

#[tokio::test]
async fn an_open_circuit_fails_fast() {
    let (stack, server) = setup(&[
        ("BFF_UPSTREAM_ORDER_BREAKER_MIN_CALLS", "2"),
        ("BFF_UPSTREAM_ORDER_OPEN_FOR", "30s"),
        ("BFF_UPSTREAM_ORDER_RETRIES", "0"),
    ])
    .await;
    let token = testkit::user_token(&stack, "user0008", "bff-mobile", None);
    testkit::set_fault(
        &stack,
        "order",
        json!({ "latency_ms": 400, "error_rate": 1.0 }),
    )
    .await;
    for _ in 0..2 {
        let body: Value = dashboard(&server, &token).await.json().await.expect("json");
        assert_eq!(body["metadata"]["reasons"]["orders"], "upstream_error");
    }
    let started = Instant::now();
    let body: Value = dashboard(&server, &token).await.json().await.expect("json");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "no wait for the 400 ms upstream: {:?}",
        started.elapsed()
    );
    assert_eq!(body["metadata"]["reasons"]["orders"], "circuit_open");
    let ready = server.get_json("/readyz").await;
    assert_eq!(ready["upstreams"]["order"], "open");
    assert_eq!(ready["upstreams"]["user"], "closed");
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let (stack, server) = setup(&[]).await;
    let web_token = testkit::user_token(&stack, "user0001", "bff-web", None);
    let no_token = client()
        .get(server.url("/v1/dashboard"))
        .send()
        .await
        .expect("request");
    let other_aud = dashboard(&server, &web_token).await;
    let garbage = dashboard(&server, "not.a.jwt").await;
    let basic = client()
        .get(server.url("/v1/dashboard"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .expect("request");
    for (response, refused_token) in [
        (no_token, false),
        (other_aud, true),
        (garbage, true),
        (basic, false),
    ] {
        assert_eq!(response.status(), 401);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        if refused_token {
            assert!(
                challenge.starts_with(
                    "Bearer realm=\"bff-mobile\", error=\"invalid_token\", error_description="
                ),
                "{challenge}"
            );
        } else {
            assert_eq!(challenge, "Bearer realm=\"bff-mobile\"");
        }
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["code"], "unauthorized");
    }
    let metrics = server.get_text("/metrics").await;
    for reason in ["missing", "audience", "malformed", "not_bearer"] {
        let series = format!(r#"bff_auth_rejected_total{{reason="{reason}"}}"#);
        assert!(metrics.contains(&series), "{series} in /metrics");
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_problem_never_a_5xx() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let cases = [
        ("GET", "/v1/dashboard?dpr=9", 400),
        ("GET", "/v1/dashboard?dpr=abc", 400),
        ("GET", "/v1/dashboard?colour=red", 400),
        ("GET", "/v1/dashboard?dpr=%ZZ", 400),
        ("GET", "/v1/nothing", 404),
        ("POST", "/v1/dashboard", 405),
        ("GET", "/v1/dashboard/../../etc/passwd", 404),
    ];
    for (method, path, status) in cases {
        let response = client()
            .request(method.parse().expect("method"), server.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json",
            "{method} {path}"
        );
        let text = response.text().await.expect("body");
        assert_no_internals(&text);
        let problem: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(problem["status"], status);
        if path.contains("dpr=9") {
            assert_eq!(problem["errors"][0]["field"], "dpr");
        }
    }
    let big = client()
        .post(server.url("/v1/dashboard"))
        .bearer_auth(&token)
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .expect("request");
    // The body limit answers before routing looks at the method.
    assert_eq!(big.status(), 413);
    assert_eq!(
        big.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = big.json().await.expect("json");
    assert_eq!(problem["code"], "payload_too_large");
}

#[tokio::test]
async fn request_ids_are_honoured_or_generated_and_metrics_are_served() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let r = client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(&token)
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = client()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(&token)
        .header("x-request-id", "bad id!")
        .send()
        .await
        .expect("request");
    assert_ne!(r.headers()["x-request-id"], "bad id!");
    assert_eq!(r.headers()["x-request-id"].len(), 36);
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("http_server_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("http_route=\"/v1/dashboard\""));
    assert!(metrics.contains("http_client_request_duration_seconds_bucket"));
    assert!(metrics.contains("upstream=\"user\""));
}

#[tokio::test]
async fn a_user_the_user_service_does_not_know_is_404() {
    let stack = testkit::start_demo().await;
    let jwks = testkit::JwksServer::start().await;
    let jwks_url = jwks.jwks_url();
    let config = testkit::bff_config_with(
        &stack,
        bff_mobile::SPEC,
        &[
            ("BFF_JWKS_URL", jwks_url.as_str()),
            ("BFF_ISSUER", testkit::TEST_ISSUER),
        ],
    );
    let server = testkit::start_bff(config, bff_mobile::app).await;
    let token = jwks.mint(&testkit::TestClaims::new(
        "bff-mobile",
        "00000000-0000-4000-8000-000000000000",
        "profile",
    ));
    let response = dashboard(&server, &token).await;
    assert_eq!(response.status(), 404);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "not_found");

    let not_a_user = jwks.mint(&testkit::TestClaims::new(
        "bff-mobile",
        "partner-acme",
        "catalog:read",
    ));
    assert_eq!(dashboard(&server, &not_a_user).await.status(), 403);
}

#[tokio::test]
async fn prefer_handling_strict_turns_a_partial_answer_into_a_503() {
    let (stack, server) = setup_stand_in_only().await;
    let token = testkit::user_token(&stack, "user0011", "bff-mobile", None);
    let strict = |server: &TestServer| {
        client()
            .get(server.url("/v1/dashboard"))
            .bearer_auth(&token)
            .header("prefer", "handling=strict")
    };
    let whole = strict(&server).send().await.expect("request");
    assert_eq!(
        whole.status(),
        200,
        "nothing failed: strict changes nothing"
    );
    assert_eq!(whole.headers()["preference-applied"], "handling=strict");

    testkit::set_fault(
        &stack,
        "recommendation",
        json!({ "error_rate": 1.0, "status": 500 }),
    )
    .await;
    let lenient = dashboard(&server, &token).await;
    assert_eq!(lenient.status(), 200, "partial by default");
    assert!(lenient.headers().get("preference-applied").is_none());

    let refused = strict(&server).send().await.expect("request");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["preference-applied"], "handling=strict");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = refused.json().await.expect("json");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("recommendations (upstream_error)") && !detail.contains("orders"),
        "names the failed section and why: {detail}"
    );
    testkit::clear_fault(&stack, "recommendation").await;
}

#[tokio::test]
async fn each_content_coding_has_its_own_strong_etag_and_all_revalidate() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0004", "bff-mobile", None);
    let get = |encoding: &'static str, if_none_match: Option<String>| {
        let mut request = client()
            .get(server.url("/v1/dashboard"))
            .bearer_auth(&token)
            .header(header::ACCEPT_ENCODING, encoding);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        request.send()
    };
    let tag_of = |r: &reqwest::Response| {
        r.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let identity = get("identity", None).await.expect("request");
    let br = get("br", None).await.expect("request");
    assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
    let (identity_tag, br_tag) = (tag_of(&identity), tag_of(&br));
    assert_ne!(identity_tag, br_tag, "two representations, two strong tags");
    assert!(
        br_tag.starts_with('"') && br_tag.ends_with("-br\""),
        "{br_tag}"
    );

    // Either tag revalidates, whatever the encoding asked now, and the 304
    // repeats the tag the client holds.
    for (held, now) in [
        (&br_tag, "identity"),
        (&identity_tag, "br"),
        (&br_tag, "br"),
    ] {
        let again = get(now, Some(held.clone())).await.expect("request");
        assert_eq!(again.status(), 304, "{held} with {now}");
        assert_eq!(&tag_of(&again), held);
    }
}

/// Every call the demo services received, by service.
fn upstream_calls(stack: &DemoStack) -> u64 {
    stack
        .stats()
        .snapshot()
        .values()
        .flat_map(|operations| operations.values())
        .sum()
}

fn max_age(response: &reqwest::Response) -> u64 {
    let value = response.headers()[header::CACHE_CONTROL]
        .to_str()
        .expect("ascii")
        .to_owned();
    let age = value
        .strip_prefix("private, max-age=")
        .unwrap_or_else(|| panic!("a user's dashboard is private and fresh: {value}"));
    age.parse().expect("seconds")
}

#[tokio::test]
async fn with_the_defaults_a_repeated_dashboard_is_served_from_the_cache() {
    let (stack, server) = setup(&[]).await;
    let token = testkit::user_token(&stack, "user0014", "bff-mobile", None);
    stack.stats().reset();
    let first = dashboard(&server, &token).await;
    assert_eq!(first.status(), 200);
    let calls = upstream_calls(&stack);
    assert_eq!(calls, 3, "user, orders and recommendations once each");
    // The shortest freshness is the orders' (30 s by default).
    let age = max_age(&first);
    assert!((29..=30).contains(&age), "max-age={age}");
    let body: Value = first.json().await.expect("json");

    let second = dashboard(&server, &token).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        upstream_calls(&stack),
        calls,
        "no upstream call within freshness"
    );
    assert!(max_age(&second) <= age);
    let again: Value = second.json().await.expect("json");
    assert_eq!(again["user"], body["user"]);
    assert_eq!(again["recentOrders"], body["recentOrders"]);
    assert_eq!(again["recommendations"], body["recommendations"]);
    assert_eq!(again["metadata"]["partialFailures"], 0);

    // Another user's dashboard is never built from this one's fragments.
    let other = testkit::user_token(&stack, "user0015", "bff-mobile", None);
    let theirs: Value = dashboard(&server, &other).await.json().await.expect("json");
    assert_ne!(theirs["user"]["id"], body["user"]["id"]);
    assert_eq!(upstream_calls(&stack), calls + 3);
}
