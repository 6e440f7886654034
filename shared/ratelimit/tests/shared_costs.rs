//! Costs charged in Redis: two limiters (two replicas) on one real
//! `redis-server` spend one quota in units, all or nothing.

use std::time::Duration;

use bff_ratelimit::{LimiterConfig, Policy, Quota, RateLimiter};

fn limiter(url: &str) -> RateLimiter {
    RateLimiter::new(LimiterConfig {
        policies: vec![Policy {
            name: "premium",
            quota: Quota::new(100, Duration::from_secs(60)).expect("quota"),
        }],
        redis_url: Some(url.to_owned()),
        redis_timeout: Duration::from_millis(500),
        namespace: "bff-test".to_owned(),
    })
    .expect("limiter")
}

#[tokio::test]
async fn replicas_charge_one_quota_in_units_all_or_nothing() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let (a, b) = (limiter(&redis.url()), limiter(&redis.url()));
    let charge = |l: &RateLimiter, cost| {
        let l = l.clone();
        async move {
            l.check_cost("premium", "partner-acme", cost, Some("ids"))
                .await
                .expect("policy")
        }
    };
    let first = charge(&a, 50).await;
    assert!(first.allowed);
    assert_eq!(first.remaining, 50);
    let second = charge(&b, 30).await;
    assert!(second.allowed, "the other replica sees the same quota");
    assert_eq!(second.remaining, 20);
    let refused = charge(&a, 30).await;
    assert!(!refused.allowed, "30 is more than the 20 left");
    assert!(refused.retry_after > Duration::ZERO);
    // The refusal spent nothing: 20 are still there, on either replica.
    let last = charge(&b, 20).await;
    assert!(last.allowed);
    assert_eq!(last.remaining, 0);
    // Nothing is left, on either replica.
    assert!(!charge(&a, 1).await.allowed);
}
