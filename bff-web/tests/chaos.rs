//! Chaos over real sockets: faults injected through the control API into
//! the REST (reviews), GraphQL (pricing) and gRPC (inventory) upstreams of
//! the product page, all at once. For every fault: each answer comes within
//! its deadline plus a margin with the right partial shape and reasons; the
//! breakers open (on slowness and hangs as well as on errors), then fail
//! fast, and recover through half-open once the fault is gone; retries stay
//! within their budget; nothing panics.

use std::time::{Duration, Instant};

use demo_services::{DemoStack, ServiceName};
use serde_json::{Value, json};
use testkit::TestServer;

/// The faulted upstreams, by service name, upstream name and section.
const FAULTED: [(&str, &str, &str); 3] = [
    ("review", "review", "reviews"),
    ("pricing", "pricing", "pricing"),
    ("inventory", "inventory", "inventory"),
];

const OPTIONAL_DEADLINE: Duration = Duration::from_millis(600);
const OPEN_FOR: Duration = Duration::from_secs(1);

struct Chaos {
    stack: DemoStack,
    server: TestServer,
    token: String,
    path: String,
}

async fn setup(extra: &[(&str, &str)]) -> Chaos {
    let stack = testkit::start_demo().await;
    // Every page reaches the upstreams: the cache only stands in.
    let stand_in = testkit::stand_in_only(bff_web::SPEC);
    let mut env: Vec<(&str, &str)> = stand_in
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend_from_slice(&[
        ("BFF_DEADLINE_REQUEST", "1s"),
        ("BFF_DEADLINE_OPTIONAL", "600ms"),
        ("BFF_UPSTREAM_ALL_BREAKER_WINDOW", "10"),
        ("BFF_UPSTREAM_ALL_BREAKER_MIN_CALLS", "4"),
        ("BFF_UPSTREAM_ALL_FAILURE_RATE", "50"),
        ("BFF_UPSTREAM_ALL_SLOW_CALL", "300ms"),
        ("BFF_UPSTREAM_ALL_SLOW_RATE", "50"),
        ("BFF_UPSTREAM_ALL_OPEN_FOR", "1s"),
        ("BFF_UPSTREAM_ALL_HALF_OPEN_CALLS", "1"),
    ]);
    env.extend_from_slice(extra);
    let config = testkit::bff_config_with(&stack, bff_web::SPEC, &env);
    let server = testkit::start_bff(config, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0002", "bff-web", None);
    let path = format!("/v1/products/{}", stack.data().products()[3].id);
    Chaos {
        stack,
        server,
        token,
        path,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl Chaos {
    async fn page(&self) -> (u16, Value, Duration) {
        let started = Instant::now();
        let r = client()
            .get(self.server.url(&self.path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        (status, body, started.elapsed())
    }

    async fn circuits(&self) -> Value {
        self.server.get_json("/readyz").await["upstreams"].clone()
    }

    async fn fault_all(&self, fault: Value) {
        for (service, _, _) in FAULTED {
            testkit::set_fault(&self.stack, service, fault.clone()).await;
        }
    }

    async fn clear_all(&self) {
        for (service, _, _) in FAULTED {
            testkit::clear_fault(&self.stack, service).await;
        }
    }

    /// One degraded answer: 200 within the optional deadline plus a margin,
    /// the product there, each faulted section failed for an allowed reason
    /// (missing, or served stale when an earlier call had cached it).
    async fn degraded_page(&self, allowed: &[&str]) -> Duration {
        let (status, body, took) = self.page().await;
        assert_eq!(status, 200, "{body}");
        assert!(
            took < OPTIONAL_DEADLINE + Duration::from_millis(400),
            "answered in {took:?}"
        );
        assert!(body["product"]["id"].is_string(), "{body}");
        let stale = &body["metadata"]["stale"];
        let is_stale = |s: &str| stale.as_array().is_some_and(|a| a.iter().any(|v| v == s));
        if !is_stale("pricing") {
            assert_eq!(body["pricing"], json!({ "error": "unavailable" }), "{body}");
        }
        assert!(is_stale("reviews") || body["reviews"].is_null(), "{body}");
        assert!(
            is_stale("inventory") || body["inventory"].is_null(),
            "{body}"
        );
        assert_eq!(body["metadata"]["partialFailures"], 3, "{body}");
        for (_, _, section) in FAULTED {
            let reason = body["metadata"]["reasons"][section].as_str().unwrap_or("");
            assert!(
                allowed.contains(&reason),
                "{section}: {reason} not in {allowed:?}"
            );
        }
        took
    }

    /// Drives requests until every faulted circuit is open, then checks it
    /// fails fast, then clears the fault and checks recovery through
    /// half-open.
    async fn opens_fails_fast_and_recovers(&self, fault: Value, reason: &str) {
        self.fault_all(fault.clone()).await;
        let mut opened = false;
        for _ in 0..8 {
            self.degraded_page(&[reason, "circuit_open"]).await;
            let circuits = self.circuits().await;
            if FAULTED.iter().all(|(_, u, _)| circuits[u] == "open") {
                opened = true;
                break;
            }
        }
        assert!(opened, "{fault}: circuits {}", self.circuits().await);
        assert_eq!(self.circuits().await["product"], "closed");
        let took = self.degraded_page(&["circuit_open"]).await;
        assert!(
            took < Duration::from_millis(250),
            "an open circuit fails fast: {took:?}"
        );
        self.clear_all().await;
        tokio::time::sleep(OPEN_FOR + Duration::from_millis(100)).await;
        let (status, body, _) = self.page().await;
        assert_eq!(status, 200);
        assert_eq!(body["metadata"]["partialFailures"], 0, "recovered: {body}");
        assert!(body["pricing"]["current"].is_u64(), "{body}");
        let circuits = self.circuits().await;
        for (_, upstream, _) in FAULTED {
            assert_eq!(circuits[upstream], "closed", "{upstream} after its probe");
        }
    }
}

#[tokio::test]
async fn slow_upstreams_time_out_and_open_their_circuits() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(json!({ "latency_ms": 900, "jitter_ms": 200 }), "timeout")
        .await;
}

#[tokio::test]
async fn slow_but_successful_calls_open_the_circuit_by_slow_call_rate() {
    let c = setup(&[]).await;
    // Every call answers within the deadline, but slower than the 300 ms
    // slow-call threshold: the first answers still carry the data.
    c.fault_all(json!({ "latency_ms": 350, "jitter_ms": 100 }))
        .await;
    let (status, body, took) = c.page().await;
    assert_eq!(status, 200);
    assert_eq!(body["metadata"]["partialFailures"], 0, "{body}");
    assert!(took < OPTIONAL_DEADLINE, "{took:?}");
    for _ in 0..3 {
        c.page().await;
    }
    let circuits = c.circuits().await;
    for (_, upstream, _) in FAULTED {
        assert_eq!(circuits[upstream], "open", "slow calls open {upstream}");
    }
    let took = c.degraded_page(&["circuit_open"]).await;
    assert!(took < Duration::from_millis(250), "{took:?}");
    let (_, body, _) = c.page().await;
    let mut stale: Vec<&str> = body["metadata"]["stale"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    stale.sort_unstable();
    assert_eq!(
        stale,
        ["inventory", "pricing", "reviews"],
        "the copies of the slow answers stand in"
    );
}

#[tokio::test]
async fn hanging_upstreams_are_abandoned_at_the_deadline_and_open_their_circuits() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(json!({ "hang": true }), "timeout")
        .await;
}

#[tokio::test]
async fn erroring_upstreams_open_their_circuits() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(
        json!({ "error_rate": 1.0, "status": 500 }),
        "upstream_error",
    )
    .await;
    let metrics = c.server.get_text("/metrics").await;
    for expected in [
        // gRPC calls are measured as RPCs, HTTP ones as HTTP client calls.
        r#"rpc_client_call_duration_seconds_count{upstream="inventory",operation="BatchGetStock",outcome="server_error","#,
        r#"http_client_request_duration_seconds_count{upstream="review",operation="list_reviews",outcome="server_error","#,
        r#"http_client_request_duration_seconds_count{upstream="pricing",operation="pricings",outcome="circuit_open","#,
        r#"bff_upstream_circuit_transitions_total{upstream="review",state="open"}"#,
        r#"bff_upstream_circuit_transitions_total{upstream="review",state="half_open"}"#,
        r#"bff_upstream_circuit_transitions_total{upstream="review",state="closed"}"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from /metrics"
        );
    }
}

#[tokio::test]
async fn reset_connections_open_their_circuits() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(json!({ "reset_rate": 1.0 }), "unavailable")
        .await;
}

#[tokio::test]
async fn malformed_bodies_count_as_failures() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(json!({ "body": "malformed" }), "upstream_error")
        .await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_count_as_failures() {
    let c = setup(&[]).await;
    c.opens_fails_fast_and_recovers(json!({ "body": "oversized" }), "upstream_error")
        .await;
}

#[tokio::test]
async fn flapping_upstreams_never_break_the_page_and_retries_stay_within_budget() {
    // The breaker is kept out of the way (a window it never fills) so that
    // every failure reaches the retry layer.
    let c = setup(&[
        ("BFF_UPSTREAM_REVIEW_BREAKER_WINDOW", "1000"),
        ("BFF_UPSTREAM_REVIEW_BREAKER_MIN_CALLS", "1000"),
        ("BFF_UPSTREAM_REVIEW_RETRIES", "2"),
        ("BFF_UPSTREAM_REVIEW_RETRY_BUDGET", "20"),
        ("BFF_UPSTREAM_REVIEW_RETRY_MIN_PER_SEC", "1"),
    ])
    .await;
    c.stack.stats().reset();
    testkit::set_fault(
        &c.stack,
        "review",
        json!({ "error_rate": 0.5, "status": 503 }),
    )
    .await;
    const REQUESTS: u64 = 40;
    let mut degraded = 0;
    for _ in 0..REQUESTS {
        let (status, body, took) = c.page().await;
        assert_eq!(status, 200, "{body}");
        assert!(
            took < OPTIONAL_DEADLINE + Duration::from_millis(400),
            "{took:?}"
        );
        if body["metadata"]["reasons"]["reviews"].is_string() {
            assert_eq!(body["metadata"]["reasons"]["reviews"], "upstream_error");
            degraded += 1;
        } else {
            assert!(body["reviews"]["items"].is_array(), "{body}");
        }
    }
    let calls = c.stack.stats().count(ServiceName::Review, "GET /reviews");
    // 20% of the requests plus the floor of one retry a second over the
    // budget's ten-second window.
    let most = REQUESTS + REQUESTS / 5 + 10;
    assert!(
        calls > REQUESTS && calls <= most,
        "{calls} calls for {REQUESTS} requests (at most {most})"
    );
    assert!(degraded < REQUESTS, "retries rescue some requests");
}
