//! Every BFF kind on one real `redis-server`, as Compose and the Kubernetes
//! base deploy them: bff-mobile and bff-web both serve a user, the order
//! service then fails, and a cold replica of each serves *its own* copy of
//! the user's orders as a stand-in (200, `stale` names `orders`), whichever
//! BFF wrote first. (Before entries were namespaced by BFF, the second
//! writer replaced the first's copy under the same key, and the first BFF's
//! cold replica could not decode it: `orders` was degraded with no data.)

use std::time::Duration;

use bff_edge::BffSpec;
use demo_services::{DemoConfig, DemoStack};
use serde_json::{Value, json};
use testkit::TestServer;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bff {
    Mobile,
    Web,
}

impl Bff {
    fn spec(self) -> BffSpec {
        match self {
            Bff::Mobile => bff_mobile::SPEC,
            Bff::Web => bff_web::SPEC,
        }
    }

    /// A replica on `redis`. Both keep orders only to stand in for failures
    /// here (web does by default; mobile would otherwise answer a cold
    /// replica's dashboard from the fresh shared copy, without asking the
    /// failing service at all).
    async fn replica(self, stack: &DemoStack, redis: &str) -> TestServer {
        let env = [
            ("REDIS_URL", redis),
            ("BFF_CACHE_ORDERS_FRESH", "0s"),
            ("BFF_CACHE_ORDERS_REVALIDATE", "0s"),
        ];
        let config = testkit::bff_config_with(stack, self.spec(), &env);
        match self {
            Bff::Mobile => testkit::start_bff(config, bff_mobile::app).await,
            Bff::Web => testkit::start_bff(config, bff_web::app).await,
        }
    }

    async fn dashboard(self, server: &TestServer, stack: &DemoStack, user: &str) -> Value {
        let token = testkit::user_token(stack, user, self.spec().name, None);
        let response = reqwest::Client::new()
            .get(server.url("/v1/dashboard"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{self:?}");
        response.json().await.expect("json")
    }
}

/// The keys in Redis, to wait for the shared tier's background writes.
async fn keys(redis: &str) -> usize {
    let client = redis::Client::open(redis).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:fm*:orders:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.len()
}

async fn each_bff_serves_its_own_stand_in(order: [Bff; 2], user: &str) {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let stack = testkit::start_demo_with(DemoConfig {
        redis_url: Some(url.clone()),
        ..DemoConfig::ephemeral()
    })
    .await;
    for bff in order {
        let server = bff.replica(&stack, &url).await;
        let body = bff.dashboard(&server, &stack, user).await;
        assert_eq!(body["metadata"]["partialFailures"], 0, "{bff:?}: {body}");
    }
    let started = std::time::Instant::now();
    while keys(&url).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "both BFFs' orders reach Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    testkit::set_fault(&stack, "order", json!({ "error_rate": 1.0, "status": 503 })).await;
    for bff in order {
        let cold = bff.replica(&stack, &url).await;
        let body = bff.dashboard(&cold, &stack, user).await;
        assert_eq!(
            body["metadata"]["degraded"],
            json!(["orders"]),
            "{bff:?}: {body}"
        );
        assert_eq!(
            body["metadata"]["stale"],
            json!(["orders"]),
            "{bff:?} serves its own orders stale: {body}"
        );
        let orders = body["recentOrders"].as_array().expect("orders stood in");
        assert!(!orders.is_empty(), "{bff:?}");
        // Each in its own shape: web's orders carry their lines, mobile's
        // a one-line summary.
        match bff {
            Bff::Web => assert!(orders[0]["items"].is_array(), "{body}"),
            Bff::Mobile => assert!(
                orders[0].get("items").is_none() && orders[0]["itemCount"].is_u64(),
                "{body}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_first_then_mobile() {
    each_bff_serves_its_own_stand_in([Bff::Web, Bff::Mobile], "user0012").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_first_then_web() {
    each_bff_serves_its_own_stand_in([Bff::Mobile, Bff::Web], "user0013").await;
}
