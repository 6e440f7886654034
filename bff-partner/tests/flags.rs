//! Gradual migration of version-less partners (flag
//! `unversioned-version`): v2 as shipped, v1 when the environment says so,
//! and a change made in Redis applying within 2 s without a restart;
//! listed on the admin route.

use std::time::{Duration, Instant};

use demo_services::DemoStack;
use testkit::TestServer;

const ADMIN: &str = "an-admin-token-of-at-least-32-characters";

async fn partner(stack: &DemoStack, extra: &[(&str, &str)]) -> TestServer {
    let config = testkit::bff_config_with(stack, bff_partner::SPEC, extra);
    testkit::start_bff(config, bff_partner::app).await
}

/// The version `/products` served without `API-Version`.
async fn unversioned(server: &TestServer, stack: &DemoStack, token: &str) -> String {
    let path = format!("/products?ids={}", stack.data().products()[0].id);
    let response = reqwest::Client::new()
        .get(server.url(&path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let version = response.headers()["api-version"]
        .to_str()
        .expect("header")
        .to_owned();
    if version == "1" {
        assert!(response.headers().contains_key("deprecation"), "v1 says so");
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_less_partners_move_to_v2_as_the_flag_says() {
    let stack = testkit::start_demo().await;
    let acme = testkit::partner_token(&stack, "partner-acme");

    let shipped = partner(&stack, &[]).await;
    assert_eq!(
        unversioned(&shipped, &stack, &acme).await,
        "2",
        "the newest"
    );

    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let server = partner(
        &stack,
        &[
            ("BFF_FLAG_UNVERSIONED_VERSION", "v1"),
            ("REDIS_URL", &url),
            ("BFF_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    assert_eq!(
        unversioned(&server, &stack, &acme).await,
        "1",
        "the environment"
    );

    // An operator moves everyone to v2 in Redis: applied within 2 s.
    redis
        .command(&["HSET", "bff-partner:flags:v1", "unversioned-version", "v2"])
        .await;
    let changed = Instant::now();
    while unversioned(&server, &stack, &acme).await != "2" {
        assert!(changed.elapsed() < Duration::from_secs(2), "not within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The admin route lists it, with where its split comes from.
    let listing: serde_json::Value = reqwest::Client::new()
        .get(server.url("/admin/flags"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let flag = &listing["flags"][0];
    assert_eq!(flag["key"], "unversioned-version");
    assert_eq!(flag["source"], "redis");
    assert_eq!(
        flag["split"][1],
        serde_json::json!({"variant": "v2", "percent": 100.0})
    );
    assert_eq!(listing["shared"]["key"], "bff-partner:flags:v1");
    assert!(listing["shared"]["error"].is_null());
    let refused = reqwest::Client::new()
        .get(server.url("/admin/flags"))
        .bearer_auth(&acme)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 403, "the admin token only");
}
