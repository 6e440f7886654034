//! Two `bff-web` binaries with their default settings sharing one real
//! `redis-server`: a product page loaded by one is a shared hit for the
//! other, repeated pages within the product's freshness make no product
//! call on either, a price change reaches both within a second while the
//! product itself keeps being served from the cache, and Redis going away
//! costs no request. Upstream calls are counted at the upstream (`/stats`).

use std::time::{Duration, Instant};

use demo_services::{DemoConfig, ServiceName};
use serde_json::{Value, json};
use testkit::BffProcess;

async fn replica(stack: &demo_services::DemoStack, redis: &str) -> BffProcess {
    BffProcess::start(
        env!("CARGO_BIN_EXE_bff-web"),
        stack,
        &testkit::upstreams_of(bff_web::SPEC),
        &[("REDIS_URL", redis)],
    )
    .await
}

async fn page(server: &BffProcess, token: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn metrics_of(server: &BffProcess) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one series in a Prometheus text exposition (0 if absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_fragments_and_price_changes_reach_both() {
    let Some(mut redis) = testkit::RedisServer::start().await else {
        return;
    };
    let stack = testkit::start_demo_with(DemoConfig {
        redis_url: Some(redis.url()),
        ..DemoConfig::ephemeral()
    })
    .await;
    let (a, b) = (
        replica(&stack, &redis.url()).await,
        replica(&stack, &redis.url()).await,
    );
    let token = testkit::user_token(&stack, "user0003", "bff-web", None);
    let id = stack.data().products()[7].id;
    let path = format!("/v1/products/{id}");
    stack.stats().reset();

    let first = page(&a, &token, &path).await;
    assert_eq!(first["metadata"]["partialFailures"], 0, "{first}");
    // The shared tier is written in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = page(&b, &token, &path).await;
    assert_eq!(second["product"], first["product"]);
    assert_eq!(second["pricing"], first["pricing"]);
    let products = || {
        stack.stats().count(
            ServiceName::Product,
            "/catalog.v1.ProductService/BatchGetProducts",
        )
    };
    let prices = || stack.stats().count(ServiceName::Pricing, "POST /graphql");
    assert_eq!(products(), 1, "b found a's product in Redis");
    assert_eq!(prices(), 1, "and its price");
    assert_eq!(
        counter(
            &metrics_of(&b).await,
            r#"bff_cache_fragments_total{kind="product",result="hit",tier="shared"}"#
        ),
        1,
        "b's first product page was a shared-tier hit"
    );
    for _ in 0..5 {
        for replica in [&a, &b] {
            let again = page(replica, &token, &path).await;
            assert_eq!(again["product"], first["product"]);
        }
    }
    assert_eq!(
        products(),
        1,
        "repeated pages within freshness: no product call"
    );

    let response = reqwest::Client::new()
        .put(format!("{}/prices/{id}", stack.control_url()))
        .json(&json!({ "current": 4321 }))
        .send()
        .await
        .expect("control API");
    assert_eq!(response.status(), 200);
    let changed = Instant::now();
    for replica in [&a, &b] {
        loop {
            let body = page(replica, &token, &path).await;
            if body["pricing"]["current"] == 4321 {
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "the new price reached every replica within a second: {}",
                body["pricing"]
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    assert_eq!(products(), 1, "only the price fragment was evicted");
    assert!(prices() >= 2, "the price was fetched again");

    let metrics = metrics_of(&a).await;
    assert!(
        metrics.contains("bff_cache_lookups_total{section=\"product\",result=\"hit\"}"),
        "fresh hits are counted"
    );

    // Redis goes away: no request fails, and its return is picked up.
    redis.stop().await;
    for _ in 0..10 {
        page(&a, &token, &path).await;
        page(
            &b,
            &token,
            &format!("/v1/products/{}", stack.data().products()[8].id),
        )
        .await;
    }
    redis.restart().await;
    let other = format!("/v1/products/{}", stack.data().products()[9].id);
    page(&a, &token, &other).await;
    let started = Instant::now();
    for n in 10.. {
        // A product neither replica has seen: b reads it from Redis once
        // a's writes reach the restarted server.
        let path = format!("/v1/products/{}", stack.data().products()[n].id);
        page(&a, &token, &path).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let calls = products();
        page(&b, &token, &path).await;
        if products() == calls {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the shared tier did not come back"
        );
    }
}
