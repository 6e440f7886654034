//! Each fault kind of the control API, on each protocol: REST, GraphQL, gRPC
//! (and the identity provider). Timing bounds have generous margins.

use std::time::{Duration, Instant};

use bff_proto::catalog::v1::GetProductRequest;
use bff_proto::catalog::v1::product_service_client::ProductServiceClient;
use demo_services::{DemoStack, ServiceName};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    // No connection reuse: a reset must not poison the next test step.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

async fn set_fault(stack: &DemoStack, service: &str, fault: Value) {
    let response = client()
        .put(format!("{}/faults/{service}", stack.control_url()))
        .json(&fault)
        .send()
        .await
        .expect("control API");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn clear_fault(stack: &DemoStack, service: &str) {
    let response = client()
        .delete(format!("{}/faults/{service}", stack.control_url()))
        .send()
        .await
        .expect("control API");
    assert_eq!(response.status(), 204);
}

/// One request in the protocol of `service`: the HTTP status (200 for a
/// successful gRPC call, the mapped status otherwise), or an error string
/// when the connection failed.
async fn call(stack: &DemoStack, service: ServiceName) -> Result<u16, String> {
    let user = stack.data().users()[0].id;
    let product = stack.data().products()[0].id;
    match service {
        ServiceName::Product => {
            let mut client = ProductServiceClient::connect(stack.url(service))
                .await
                .map_err(|e| e.to_string())?;
            match client
                .get_product(GetProductRequest {
                    id: product.to_string(),
                })
                .await
            {
                Ok(_) => Ok(200),
                Err(status) => match status.code() {
                    tonic::Code::Unavailable if status.message().contains("fault injected") => {
                        Ok(503)
                    }
                    tonic::Code::Internal if status.message().contains("fault injected") => Ok(500),
                    _ => Err(format!("{:?}: {}", status.code(), status.message())),
                },
            }
        }
        ServiceName::Pricing => {
            let query = json!({ "query": format!("{{ pricing(productId: \"{product}\") {{ current }} }}") });
            let r = client()
                .post(stack.url(service))
                .json(&query)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.status().as_u16())
        }
        ServiceName::Identity => {
            let r = client()
                .get(format!("{}/.well-known/jwks.json", stack.url(service)))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.status().as_u16())
        }
        _ => {
            let r = client()
                .get(format!("{}/users/{user}", stack.url(ServiceName::User)))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.status().as_u16())
        }
    }
}

const PROTOCOLS: [ServiceName; 4] = [
    ServiceName::User,
    ServiceName::Pricing,
    ServiceName::Product,
    ServiceName::Identity,
];

#[tokio::test]
async fn latency_delays_every_protocol() {
    let stack = testkit::start_demo().await;
    for service in PROTOCOLS {
        set_fault(&stack, service.as_str(), json!({ "latency_ms": 300 })).await;
        let started = Instant::now();
        assert_eq!(call(&stack, service).await, Ok(200), "{service}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "{service} answered in {took:?}, before the latency"
        );
        assert!(
            took < Duration::from_millis(2_300),
            "{service} took {took:?}"
        );
        clear_fault(&stack, service.as_str()).await;
        let started = Instant::now();
        assert_eq!(call(&stack, service).await, Ok(200));
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{service} is fast again once cleared"
        );
    }
}

#[tokio::test]
async fn error_status_fails_every_protocol() {
    let stack = testkit::start_demo().await;
    for service in PROTOCOLS {
        set_fault(
            &stack,
            service.as_str(),
            json!({ "error_rate": 1.0, "status": 500 }),
        )
        .await;
        assert_eq!(call(&stack, service).await, Ok(500), "{service}");
        set_fault(&stack, service.as_str(), json!({ "error_rate": 1 })).await;
        assert_eq!(
            call(&stack, service).await,
            Ok(503),
            "{service}: the default status is 503"
        );
        clear_fault(&stack, service.as_str()).await;
        assert_eq!(call(&stack, service).await, Ok(200), "{service}");
    }
}

#[tokio::test]
async fn error_rate_is_a_probability() {
    let stack = testkit::start_demo().await;
    set_fault(&stack, "user", json!({ "error_rate": 0.5 })).await;
    let mut failures = 0;
    for _ in 0..200 {
        if call(&stack, ServiceName::User).await == Ok(503) {
            failures += 1;
        }
    }
    // Binomial(200, 0.5): below 60 or above 140 happens once in 10^8 runs.
    assert!(
        (60..=140).contains(&failures),
        "{failures} failures out of 200"
    );
}

#[tokio::test]
async fn reset_drops_the_connection_on_every_protocol() {
    let stack = testkit::start_demo().await;
    for service in PROTOCOLS {
        set_fault(&stack, service.as_str(), json!({ "reset_rate": 1.0 })).await;
        let outcome = call(&stack, service).await;
        assert!(
            outcome.is_err(),
            "{service}: expected a connection error, got {outcome:?}"
        );
        clear_fault(&stack, service.as_str()).await;
        assert_eq!(call(&stack, service).await, Ok(200), "{service}");
    }
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let stack = std::sync::Arc::new(testkit::start_demo().await);
    for service in PROTOCOLS {
        set_fault(&stack, service.as_str(), json!({ "hang": true })).await;
        let pending = tokio::spawn({
            let stack = stack.clone();
            async move { call(&stack, service).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!pending.is_finished(), "{service} answered while hanging");
        clear_fault(&stack, service.as_str()).await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("released")
            .expect("task");
        assert_eq!(
            outcome,
            Ok(200),
            "{service} answers once the hang is cleared"
        );
    }
}

#[tokio::test]
async fn faults_are_listed_and_cleared() {
    let stack = testkit::start_demo().await;
    set_fault(
        &stack,
        "order",
        json!({ "latency_ms": 20, "jitter_ms": 10 }),
    )
    .await;
    set_fault(&stack, "inventory", json!({ "hang": true })).await;
    let list: Value = client()
        .get(format!("{}/faults", stack.control_url()))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["faults"]["order"]["latency_ms"], 20);
    assert_eq!(list["faults"]["inventory"]["hang"], true);
    clear_fault(&stack, "order").await;
    let list: Value = client()
        .get(format!("{}/faults", stack.control_url()))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(list["faults"].get("order").is_none());
    let response = client()
        .delete(format!("{}/faults", stack.control_url()))
        .send()
        .await
        .expect("clear all");
    assert_eq!(response.status(), 204);
    assert!(stack.faults().list().is_empty());
}

#[tokio::test]
async fn bad_fault_requests_are_400_naming_the_problem() {
    let stack = testkit::start_demo().await;
    let cases = [
        ("payments", r#"{"latency_ms": 10}"#, "service"),
        ("user", r#"{"latency_ms": -5}"#, "latency_ms"),
        ("user", r#"{"latency_ms": 1.5}"#, "latency_ms"),
        ("user", r#"{"error_rate": 1.5}"#, "error_rate"),
        ("user", r#"{"reset_rate": -0.1}"#, "reset_rate"),
        ("user", r#"{"status": 200}"#, "status"),
        ("user", r#"{"latency_ms": "slow"}"#, "latency_ms"),
        ("user", r#"{"hang": "yes"}"#, "hang"),
        ("user", r#"{"latency": 10}"#, "latency"),
        ("user", r#"{"latency_ms": 10"#, "body"),
        ("user", r#"[1, 2]"#, "body"),
    ];
    for (service, body, field) in cases {
        let response = client()
            .put(format!("{}/faults/{service}", stack.control_url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{service} {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| d.len() > 10));
    }
    assert!(
        stack.faults().list().is_empty(),
        "no bad request changed anything"
    );
}

/// `POST /provider-states`: a state that holds is set up (clearing faults),
/// one that does not, or that nobody knows, is refused naming it.
#[tokio::test]
async fn provider_states_are_checked_against_the_data_and_clear_faults() {
    let stack = testkit::start_demo().await;
    let user = stack.data().users()[0].id.to_string();
    let state = |state: &str, params: Value| {
        let request = client()
            .post(format!("{}/provider-states", stack.control_url()))
            .json(&serde_json::json!({ "state": state, "params": params, "action": "setup" }));
        async move {
            let response = request.send().await.expect("the control API");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    let faults = || async {
        client()
            .get(format!("{}/faults", stack.control_url()))
            .send()
            .await
            .expect("faults")
            .text()
            .await
            .expect("text")
    };
    set_fault(&stack, "user", serde_json::json!({ "error_rate": 1.0 })).await;
    assert!(faults().await.contains("\"user\""), "the fault is set");
    let (status, body) = state("a user exists", serde_json::json!({ "userId": user })).await;
    assert_eq!(status, 200, "{body}");
    let after = faults().await;
    assert!(!after.contains("\"user\""), "faults cleared: {after}");

    let (status, body) = state(
        "a user does not exist",
        serde_json::json!({ "userId": user }),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("does not hold") && body.contains(&user),
        "{body}"
    );
    let (status, body) = state("a unicorn exists", serde_json::json!({})).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("unknown provider state") && body.contains("a unicorn exists"),
        "{body}"
    );
    let (status, body) = state("a user exists", serde_json::json!({ "userId": "nope" })).await;
    assert_eq!(status, 400);
    assert!(body.contains("params.userId"), "{body}");
}
