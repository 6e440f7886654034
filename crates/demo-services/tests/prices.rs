//! Price changes through the control API reach GraphQL, the in-process event
//! stream (SSE) and Redis pub/sub.

use std::time::Duration;

use demo_services::pricing::{PRICE_EVENTS_CHANNEL, PriceChanged};
use demo_services::{DemoConfig, ServiceName};
use futures::StreamExt;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn put_price(control: &str, id: &str, body: Value) -> (u16, Value) {
    let response = client()
        .put(format!("{control}/prices/{id}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    (
        response.status().as_u16(),
        response.json().await.expect("json"),
    )
}

#[tokio::test]
async fn a_price_change_is_served_and_published_in_process() {
    let stack = testkit::start_demo().await;
    let price = stack.data().initial_prices()[5].clone();
    let id = price.product_id.to_string();

    // Subscribe to the SSE stream before changing the price.
    let events = client()
        .get(format!(
            "http://{}/events",
            stack.addr(ServiceName::Pricing)
        ))
        .send()
        .await
        .expect("sse");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.bytes_stream();

    let (status, body) = put_price(
        &stack.control_url(),
        &id,
        json!({ "current": 1234, "currency": "GBP" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["current"].as_u64(), body["version"].as_u64()),
        (Some(1234), Some(2))
    );

    let query = json!({ "query": format!("{{ pricing(productId: \"{id}\") {{ current currency version }} }}") });
    let graphql: Value = client()
        .post(stack.url(ServiceName::Pricing))
        .json(&query)
        .send()
        .await
        .expect("q")
        .json()
        .await
        .expect("json");
    assert_eq!(
        graphql["data"]["pricing"],
        json!({ "current": 1234, "currency": "GBP", "version": 2 })
    );

    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event")
            .expect("chunk")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: price.changed"), "{text}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let event: PriceChanged = serde_json::from_str(data).expect("event json");
    assert_eq!(
        (event.product_id, event.current, event.version),
        (price.product_id, 1234, 2)
    );
}

#[tokio::test]
async fn discount_alone_recomputes_the_current_price() {
    let stack = testkit::start_demo().await;
    let price = stack.data().initial_prices()[9].clone();
    let (status, body) = put_price(
        &stack.control_url(),
        &price.product_id.to_string(),
        json!({ "discount": 50 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["current"].as_u64(),
        Some((price.original as f64 / 2.0).round() as u64)
    );
}

#[tokio::test]
async fn bad_price_changes_are_400() {
    let stack = testkit::start_demo().await;
    let id = stack.data().initial_prices()[0].product_id.to_string();
    let control = stack.control_url();
    let cases = [
        (id.as_str(), json!({ "current": -1 }), "current"),
        (id.as_str(), json!({ "current": 19.99 }), "current"),
        (id.as_str(), json!({ "currency": "euro" }), "currency"),
        (id.as_str(), json!({ "discount": 120 }), "discount"),
        (id.as_str(), json!({}), "body"),
        (id.as_str(), json!({ "price": 5 }), "price"),
        ("not-a-uuid", json!({ "current": 5 }), "productId"),
    ];
    for (id, body, field) in cases {
        let (status, problem) = put_price(&control, id, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let (status, _) = put_price(
        &control,
        "00000000-0000-4000-8000-000000000000",
        json!({ "current": 5 }),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_redis_a_price_change_is_published_there() {
    let Some(redis_server) = testkit::RedisServer::start().await else {
        return;
    };
    let stack = testkit::start_demo_with(DemoConfig {
        redis_url: Some(redis_server.url()),
        ..DemoConfig::ephemeral()
    })
    .await;
    let client = redis::Client::open(redis_server.url()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(PRICE_EVENTS_CHANNEL)
        .await
        .expect("subscribe");
    let mut messages = pubsub.on_message();

    let price = stack.data().initial_prices()[2].clone();
    let (status, _) = put_price(
        &stack.control_url(),
        &price.product_id.to_string(),
        json!({ "current": 777 }),
    )
    .await;
    assert_eq!(status, 200);
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message")
        .expect("stream");
    let payload: String = message.get_payload().expect("payload");
    let event: PriceChanged = serde_json::from_str(&payload).expect("event json");
    assert_eq!((event.product_id, event.current), (price.product_id, 777));
}
