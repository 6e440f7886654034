//! The two-tier store against a real `redis-server`: two replicas sharing
//! it, invalidation across them, Redis killed and back, one load per cold
//! key, the local tier bounded by bytes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bff_cache::tiered::{
    EventMapper, FragmentPolicy, Freshness, Invalidation, Tier, TieredCache, TieredConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Price {
    product: String,
    cents: u64,
}

const PRICE: FragmentPolicy = FragmentPolicy {
    kind: "price",
    shape: 1,
    fresh_for: Duration::from_secs(30),
    revalidate_for: Duration::from_secs(30),
    stale_for: Duration::from_secs(60),
    approx_bytes: 1024,
    per_user: false,
};

fn replica(redis: Option<&testkit::RedisServer>) -> TieredCache {
    TieredCache::new(TieredConfig {
        redis_url: redis.map(testkit::RedisServer::url),
        namespace: "test".to_owned(),
        ..TieredConfig::default()
    })
    .expect("cache")
}

fn price(product: &str, cents: u64) -> Arc<Price> {
    Arc::new(Price {
        product: product.to_owned(),
        cents,
    })
}

/// Polls `check` for up to `within`.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_fragment_loaded_by_one_replica_is_a_shared_hit_for_the_other() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let (a, b) = (replica(Some(&redis)), replica(Some(&redis)));
    a.put(&PRICE, "price:p1", &[], price("p1", 100)).await;
    let hit = eventually(Duration::from_secs(2), async || {
        b.get::<Price>(&PRICE, "price:p1").await.is_some()
    })
    .await;
    assert!(hit, "b sees a's fragment through Redis");
    let again = b.get::<Price>(&PRICE, "price:p1").await.expect("cached");
    assert_eq!(
        again.tier,
        Tier::Local,
        "the shared hit filled b's own tier"
    );
    assert_eq!(again.freshness, Freshness::Fresh);
    assert_eq!(*again.value, *price("p1", 100));
}

#[tokio::test]
async fn invalidation_reaches_every_replica_and_only_the_named_fragment() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let price_events: EventMapper = Arc::new(|payload: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| {
                v["product_id"]
                    .as_str()
                    .map(|id| vec![Invalidation::Key(format!("price:{id}"))])
            })
            .unwrap_or_default()
    });
    let (a, b) = (replica(Some(&redis)), replica(Some(&redis)));
    for cache in [&a, &b] {
        cache.listen(HashMap::from([(
            "demo.prices".to_owned(),
            price_events.clone(),
        )]));
        cache
            .put(&PRICE, "price:p1", &["product:p1".into()], price("p1", 100))
            .await;
        cache
            .put(&PRICE, "price:p2", &["product:p2".into()], price("p2", 200))
            .await;
    }
    // Subscriptions are made in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.invalidate("price:p1").await;
    let gone = eventually(Duration::from_secs(1), async || {
        b.get::<Price>(&PRICE, "price:p1").await.is_none()
    })
    .await;
    assert!(gone, "b forgot p1 within a second of a's invalidation");
    assert!(
        b.get::<Price>(&PRICE, "price:p2").await.is_some(),
        "p2 untouched"
    );

    // An event published by another service (the pricing service's
    // price-changed channel) is mapped to the fragment it concerns.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    redis::cmd("PUBLISH")
        .arg("demo.prices")
        .arg(r#"{"type":"price.changed","product_id":"p2"}"#)
        .query_async::<()>(&mut conn)
        .await
        .expect("publish");
    for cache in [&a, &b] {
        let gone = eventually(Duration::from_secs(1), async || {
            cache.get::<Price>(&PRICE, "price:p2").await.is_none()
        })
        .await;
        assert!(gone, "the event reached every replica");
    }

    // By tag: every fragment stored with it, everywhere.
    a.put(&PRICE, "price:p3", &["product:p3".into()], price("p3", 3))
        .await;
    a.put(&PRICE, "reviews:p3", &["product:p3".into()], price("p3", 4))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // c read them from Redis: its copies carry the tag too.
    let c = replica(Some(&redis));
    c.listen(HashMap::new());
    for key in ["price:p3", "reviews:p3"] {
        assert_eq!(
            c.get::<Price>(&PRICE, key).await.map(|h| h.tier),
            Some(Tier::Shared)
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.invalidate_tag("product:p3").await;
    for cache in [&a, &c] {
        for key in ["price:p3", "reviews:p3"] {
            let gone = eventually(Duration::from_secs(1), async || {
                cache.get::<Price>(&PRICE, key).await.is_none()
            })
            .await;
            assert!(gone, "{key} forgotten by tag");
        }
    }
}

#[tokio::test]
async fn redis_going_away_costs_nothing_and_its_return_is_picked_up() {
    let Some(mut redis) = testkit::RedisServer::start().await else {
        return;
    };
    let a = replica(Some(&redis));
    a.put(&PRICE, "price:p1", &[], price("p1", 1)).await;
    redis.stop().await;

    let started = Instant::now();
    for i in 0..20 {
        a.put(&PRICE, &format!("price:x{i}"), &[], price("x", i))
            .await;
        assert!(
            a.get::<Price>(&PRICE, "price:p1").await.is_some(),
            "the local tier answers"
        );
        assert!(a.get::<Price>(&PRICE, "price:nowhere").await.is_none());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "every Redis call is bounded: {:?}",
        started.elapsed()
    );

    redis.restart().await;
    let b = replica(Some(&redis));
    a.put(&PRICE, "price:back", &[], price("back", 7)).await;
    let shared = eventually(Duration::from_secs(5), async || {
        a.put(&PRICE, "price:back", &[], price("back", 7)).await;
        b.get::<Price>(&PRICE, "price:back").await.is_some()
    })
    .await;
    assert!(shared, "a reconnected by itself and writes to Redis again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_of_a_cold_key_share_one_load() {
    let cache = replica(None);
    let loads = Arc::new(AtomicUsize::new(0));
    let calls = (0..1_000).map(|_| {
        let (cache, loads) = (cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&PRICE, "price:cold", &[], async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>(Price {
                        product: "cold".into(),
                        cents: 9,
                    })
                })
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        let cached = call.expect("task").expect("loaded");
        assert_eq!(cached.value.cents, 9);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn freshness_follows_the_policy_and_the_local_tier_is_bounded_by_bytes() {
    let short = FragmentPolicy {
        kind: "short",
        shape: 1,
        fresh_for: Duration::from_millis(150),
        revalidate_for: Duration::from_millis(150),
        stale_for: Duration::from_millis(300),
        approx_bytes: 64,
        per_user: false,
    };
    let cache = replica(None);
    cache.put(&short, "k", &[], price("k", 1)).await;
    let read = async || cache.get::<Price>(&short, "k").await.map(|c| c.freshness);
    assert_eq!(read().await, Some(Freshness::Fresh));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(read().await, Some(Freshness::Revalidate));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(read().await, Some(Freshness::Stale));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(read().await, None, "gone after every window");

    let small = TieredCache::new(TieredConfig {
        local_max_bytes: 10 * 1024,
        ..TieredConfig::default()
    })
    .expect("cache");
    let big = "x".repeat(1000);
    for i in 0..100 {
        small
            .put(&PRICE, &format!("k{i}"), &[], price(&big, i))
            .await;
    }
    small.sync().await;
    assert!(
        small.local_bytes() <= 10 * 1024,
        "{} bytes held",
        small.local_bytes()
    );
    assert!(small.local_bytes() > 5 * 1024, "and used");
}

#[tokio::test]
async fn per_subject_keys_never_answer_another_subject() {
    let cache = replica(None);
    cache
        .put(&PRICE, "user:alice", &[], price("alice", 1))
        .await;
    assert!(cache.get::<Price>(&PRICE, "user:bob").await.is_none());
    let bob = cache
        .get_or_load(&PRICE, "user:bob", &[], async {
            Ok::<_, String>(Price {
                product: "bob".into(),
                cents: 2,
            })
        })
        .await
        .expect("loaded");
    assert_eq!(bob.value.product, "bob");
    let alice = cache
        .get::<Price>(&PRICE, "user:alice")
        .await
        .expect("kept");
    assert_eq!(alice.value.product, "alice");
}

/// A load that counts itself and answers `cents` after `delay`.
fn counted(
    loads: &Arc<AtomicUsize>,
    cents: u64,
    delay: Duration,
) -> impl Future<Output = Result<Price, String>> + Send + 'static {
    let loads = loads.clone();
    async move {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        Ok(Price {
            product: "p".into(),
            cents,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidating_copy_is_served_at_once_and_refreshed_once_in_the_background() {
    let policy = FragmentPolicy {
        kind: "swr",
        shape: 1,
        fresh_for: Duration::from_millis(100),
        revalidate_for: Duration::from_secs(10),
        stale_for: Duration::from_secs(10),
        approx_bytes: 64,
        per_user: false,
    };
    let cache = replica(None);
    let loads = Arc::new(AtomicUsize::new(0));
    let first = cache
        .get_or_load(&policy, "k", &[], counted(&loads, 1, Duration::ZERO))
        .await
        .expect("loaded");
    assert_eq!(first.value.cents, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Twenty callers in the revalidate window: each is answered with the
    // old copy without waiting for the slow refresh, which runs once.
    let started = Instant::now();
    for _ in 0..20 {
        let served = cache
            .get_or_load(
                &policy,
                "k",
                &[],
                counted(&loads, 2, Duration::from_millis(300)),
            )
            .await
            .expect("served");
        assert_eq!(served.value.cents, 1);
        assert_eq!(served.freshness, Freshness::Revalidate);
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "nobody waited for the refresh: {:?}",
        started.elapsed()
    );
    let refreshed = eventually(Duration::from_secs(2), async || {
        cache
            .get::<Price>(&policy, "k")
            .await
            .is_some_and(|c| c.value.cents == 2 && c.freshness == Freshness::Fresh)
    })
    .await;
    assert!(refreshed, "the background refresh stored the new copy");
    assert_eq!(loads.load(Ordering::SeqCst), 2, "one load, one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_wanting_one_cold_key_load_it_once_in_the_fleet() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let (a, b) = (replica(Some(&redis)), replica(Some(&redis)));
    let loads = Arc::new(AtomicUsize::new(0));
    let calls = (0..200).map(|i| {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let load = counted(&loads, 5, Duration::from_millis(50));
        tokio::spawn(async move { cache.get_or_load(&PRICE, "price:hot", &[], load).await })
    });
    for call in futures::future::join_all(calls).await {
        let cached = call.expect("task").expect("loaded");
        assert_eq!(cached.value.cents, 5);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the replica without the lock waited for the other's copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_runs_across_an_invalidation_is_not_kept() {
    let cache = replica(None);
    let loads = Arc::new(AtomicUsize::new(0));
    let slow = {
        let cache = cache.clone();
        let load = counted(&loads, 1, Duration::from_millis(200));
        tokio::spawn(async move { cache.get_or_load(&PRICE, "price:p", &[], load).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache.invalidate("price:p").await;
    let served = slow.await.expect("task").expect("loaded");
    assert_eq!(served.value.cents, 1, "its waiters still get what it read");
    assert!(
        cache.get::<Price>(&PRICE, "price:p").await.is_none(),
        "but it may predate the change, so it is not kept"
    );

    // An invalidation of something else costs a load in flight nothing; one
    // of its tag does.
    for (key, other, kept) in [
        ("price:q", Invalidation::Key("price:elsewhere".into()), true),
        ("price:r", Invalidation::Tag("product:r".into()), false),
    ] {
        let slow = {
            let cache = cache.clone();
            let load = counted(&loads, 2, Duration::from_millis(200));
            let tags = vec!["product:r".to_owned()];
            tokio::spawn(async move { cache.get_or_load(&PRICE, key, &tags, load).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        match &other {
            Invalidation::Key(k) => cache.invalidate(k).await,
            Invalidation::Tag(t) => cache.invalidate_tag(t).await,
        }
        slow.await.expect("task").expect("loaded");
        assert_eq!(
            cache.get::<Price>(&PRICE, key).await.is_some(),
            kept,
            "{key} after {other:?}"
        );
    }
}
