//! Rate limits seen from outside: per tier (premium above standard), per
//! caller (one partner's exhausted quota costs another nothing), shared by
//! two replicas through a real `redis-server` (their combined rate stays
//! within the quota), the local limit when Redis is gone (and no request
//! fails for it), and failed authentications limited per client address.

use demo_services::DemoStack;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::TestServer;

async fn partner(stack: &DemoStack, extra: &[(&str, &str)]) -> TestServer {
    let config = testkit::bff_config_with(stack, bff_partner::SPEC, extra);
    testkit::start_bff(config, bff_partner::app).await
}

fn path(stack: &DemoStack) -> String {
    format!("/v2/products?ids={}", stack.data().products()[0].id)
}

async fn call(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// How many of `n` calls were let through; every other one must be a
/// well-formed 429.
async fn allowed_of(servers: &[&TestServer], token: &str, path: &str, n: usize) -> usize {
    let mut allowed = 0;
    for i in 0..n {
        let response = call(servers[i % servers.len()], token, path).await;
        match response.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    header(&response, "retry-after")
                        .parse::<u64>()
                        .expect("Retry-After")
                        >= 1
                );
                assert!(header(&response, "ratelimit").contains(";r=0;"));
                let body: Value = response.json().await.expect("problem");
                assert_eq!(
                    body["type"],
                    "https://iana.org/assignments/http-problem-types#quota-exceeded"
                );
            }
            other => panic!("request {i}: {other}"),
        }
    }
    allowed
}

#[tokio::test]
async fn tiers_are_ordered_and_each_caller_has_its_own_quota() {
    let stack = testkit::start_demo().await;
    let server = partner(
        &stack,
        &[
            ("BFF_RATE_LIMIT_STANDARD", "5/60s"),
            ("BFF_RATE_LIMIT_PREMIUM", "10/60s"),
        ],
    )
    .await;
    let path = path(&stack);
    let acme = testkit::partner_token(&stack, "partner-acme"); // premium
    let globex = testkit::partner_token(&stack, "partner-globex"); // standard

    let first = call(&server, &acme, &path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        "\"premium\";q=10;qu=\"ids\";w=60",
        "a partner's quota is counted in ids"
    );
    assert_eq!(header(&first, "request-cost"), "1");
    let fields = header(&first, "ratelimit");
    assert!(fields.starts_with("\"premium\";r=9;t="), "{fields}");

    assert_eq!(
        allowed_of(&[&server], &acme, &path, 12).await,
        9,
        "premium: 10 in all"
    );
    let over = call(&server, &acme, &path).await;
    assert_eq!(over.status(), 429);
    let body: Value = over.json().await.expect("problem");
    assert_eq!(body["violated-policies"], serde_json::json!(["premium"]));

    // Another caller is not touched by acme's exhausted quota.
    assert_eq!(
        allowed_of(&[&server], &globex, &path, 8).await,
        5,
        "standard: 5"
    );
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"bff_ratelimit_limited_total{bff="bff-partner",tier="premium",client="partner-acme"}"#
        ),
        "limited requests are counted per tier and client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_hold_one_quota_and_fall_back_to_their_own_without_it() {
    let Some(mut redis) = testkit::RedisServer::start().await else {
        return;
    };
    let stack = testkit::start_demo().await;
    let url = redis.url();
    let env = [
        ("BFF_RATE_LIMIT_STANDARD", "10/60s"),
        ("REDIS_URL", url.as_str()),
    ];
    let (a, b) = (partner(&stack, &env).await, partner(&stack, &env).await);
    let path = path(&stack);
    let globex = testkit::partner_token(&stack, "partner-globex");
    assert_eq!(
        allowed_of(&[&a, &b], &globex, &path, 30).await,
        10,
        "two replicas, one quota"
    );

    // Redis goes away: nothing fails for it, and each replica's own limit
    // holds (a fresh caller's quota, counted on one replica).
    redis.stop().await;
    let acme = testkit::partner_token(&stack, "partner-acme");
    let premium = [
        ("BFF_RATE_LIMIT_PREMIUM", "4/60s"),
        ("REDIS_URL", url.as_str()),
    ];
    let c = partner(&stack, &premium).await;
    assert_eq!(
        allowed_of(&[&c], &acme, &path, 7).await,
        4,
        "the local limit"
    );
    let metrics = c.get_text("/metrics").await;
    assert!(
        metrics.contains("bff_ratelimit_shared_errors_total"),
        "Redis errors are counted"
    );
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let stack = testkit::start_demo().await;
    let server = partner(&stack, &[("BFF_RATE_LIMIT_ANONYMOUS", "3/60s")]).await;
    let path = path(&stack);
    for expected in ["2", "1", "0"] {
        let response = call(&server, "not.a.token", &path).await;
        assert_eq!(response.status(), 401);
        let fields = header(&response, "ratelimit");
        assert!(
            fields.starts_with(&format!("\"anonymous\";r={expected};")),
            "{fields}"
        );
    }
    let refused = call(&server, "not.a.token", &path).await;
    assert_eq!(refused.status(), 429);
    // While the address is over its quota it is refused before its token is
    // looked at.
    let acme = testkit::partner_token(&stack, "partner-acme");
    assert_eq!(call(&server, &acme, &path).await.status(), 429);
}

async fn failed_from(server: &TestServer, path: &str, forwarded_for: &str) -> StatusCode {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth("not.a.token")
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_anonymous_quota() {
    let stack = testkit::start_demo().await;
    // The test's requests come from 127.0.0.1: here, a trusted balancer.
    let server = partner(
        &stack,
        &[
            ("BFF_RATE_LIMIT_ANONYMOUS", "2/60s"),
            ("BFF_TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8"),
        ],
    )
    .await;
    let path = path(&stack);
    // The client forged the left part; the balancers appended the rest.
    let ada = "6.6.6.6, 198.51.100.1, 10.1.1.1";
    assert_eq!(failed_from(&server, &path, ada).await, 401);
    assert_eq!(failed_from(&server, &path, ada).await, 401);
    assert_eq!(failed_from(&server, &path, ada).await, 429, "ada's quota");
    // The same client forging another left part is still ada.
    assert_eq!(
        failed_from(&server, &path, "7.7.7.7, 198.51.100.1, 10.1.1.1").await,
        429
    );
    // Another client behind the same balancer has a quota of its own.
    let bob = "198.51.100.2, 10.1.1.1";
    assert_eq!(failed_from(&server, &path, bob).await, 401);
    assert_eq!(failed_from(&server, &path, bob).await, 401);
    assert_eq!(failed_from(&server, &path, bob).await, 429, "bob's quota");
}

#[tokio::test]
async fn from_an_untrusted_peer_forged_forwarded_addresses_change_nothing() {
    let stack = testkit::start_demo().await;
    // 127.0.0.1 is not among the trusted proxies.
    let server = partner(
        &stack,
        &[
            ("BFF_RATE_LIMIT_ANONYMOUS", "2/60s"),
            ("BFF_TRUSTED_PROXIES", "10.0.0.0/8"),
        ],
    )
    .await;
    let path = path(&stack);
    assert_eq!(failed_from(&server, &path, "198.51.100.1").await, 401);
    assert_eq!(
        failed_from(&server, &path, "198.51.100.2, 10.0.0.1").await,
        401
    );
    for forged in [
        "198.51.100.3",
        "10.0.0.9",
        "198.51.100.4, 10.0.0.1",
        "garbage",
    ] {
        assert_eq!(
            failed_from(&server, &path, forged).await,
            429,
            "one bucket for the peer, whatever it says ({forged})"
        );
    }
}

#[tokio::test]
async fn a_batch_is_charged_one_unit_per_id() {
    let stack = testkit::start_demo().await;
    let server = partner(&stack, &[("BFF_RATE_LIMIT_PREMIUM", "100/60s")]).await;
    let ids: Vec<String> = stack.data().products()[..50]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    let batch = format!("/v2/products?ids={}", ids.join(","));
    let acme = testkit::partner_token(&stack, "partner-acme"); // premium

    let first = call(&server, &acme, &batch).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "request-cost"), "50");
    assert_eq!(
        header(&first, "ratelimit-policy"),
        "\"premium\";q=100;qu=\"ids\";w=60"
    );
    assert!(
        header(&first, "ratelimit").starts_with("\"premium\";r=50;"),
        "{}",
        header(&first, "ratelimit")
    );
    let second = call(&server, &acme, &batch).await;
    assert_eq!(second.status(), 200);
    assert!(header(&second, "ratelimit").starts_with("\"premium\";r=0;"));

    let third = call(&server, &acme, &batch).await;
    assert_eq!(third.status(), 429, "the third batch of 50 is over 100 ids");
    assert!(
        header(&third, "retry-after")
            .parse::<u64>()
            .expect("Retry-After")
            >= 1
    );
    assert!(header(&third, "ratelimit").starts_with("\"premium\";r=0;"));
    assert!(header(&third, "request-cost").is_empty(), "not answered");
    let body: Value = third.json().await.expect("problem");
    assert_eq!(body["violated-policies"], serde_json::json!(["premium"]));
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("costs 50 ids")),
        "{body}"
    );

    // Another premium partner asking for single ids is not touched.
    let umbrella = testkit::partner_token(&stack, "partner-umbrella");
    let single = format!("/products?ids={}", ids[1]);
    for left in (90..100).rev() {
        let response = call(&server, &umbrella, &single).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "request-cost"), "1");
        assert!(header(&response, "ratelimit").starts_with(&format!("\"premium\";r={left};")));
    }

    // A batch larger than the whole quota can never pass, and says so.
    let small = partner(&stack, &[("BFF_RATE_LIMIT_PREMIUM", "20/60s")]).await;
    let too_big = call(&small, &umbrella, &batch).await;
    assert_eq!(too_big.status(), 429);
    let body: Value = too_big.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than the whole premium quota of 20")),
        "{body}"
    );
    assert_eq!(
        call(&small, &umbrella, &single).await.status(),
        200,
        "the refused batch cost nothing"
    );

    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"bff_ratelimit_cost_total{bff="bff-partner",tier="premium",client="partner-acme"} 100"#
        ),
        "units charged per client"
    );
    // The document says so.
    let doc = server.get_json("/openapi.json").await;
    for path in ["/v1/products", "/v2/products", "/products"] {
        assert_eq!(
            doc["paths"][path]["get"]["responses"]["200"]["headers"]["Request-Cost"]["$ref"],
            "#/components/headers/Request-Cost",
            "{path}"
        );
    }
    let policy = doc["components"]["headers"]["RateLimit-Policy"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(policy.contains("qu=\"ids\""), "{policy}");
}
