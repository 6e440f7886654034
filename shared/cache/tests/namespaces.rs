//! Every BFF kind and every release on one real `redis-server`: entries are
//! namespaced by BFF and by the shape version of each fragment kind, so two
//! BFFs that cache a `user` never read each other's, two releases whose
//! value types differ never decode each other's, releases with the same
//! shape share their entries, and an entry that does not decode all the
//! same (a type changed without a new shape version) is counted, never
//! served, and replaced by the next load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bff_cache::fragment::Fragment;
use bff_cache::tiered::{FragmentStore, Tier, TieredCache, TieredConfig};
use serde::{Deserialize, Serialize};

/// What one build stores as a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
}

/// What another build stores as a user: a field the first never wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RichProfile {
    name: String,
    loyalty_points: u64,
}

const fn user<V>(kind: &'static str, shape: u16) -> Fragment<u64, V> {
    Fragment::per_user(kind, shape)
        .fresh_for(Duration::from_secs(60))
        .stale_for(Duration::from_secs(600))
}

// (Each test has its kinds: the metrics recorder is the process's, and the
// tests run at once.)
const USER_V1: Fragment<u64, Profile> = user("user", 1);
const RICH_USER_V2: Fragment<u64, RichProfile> = user("user", 2);
const MEMBER_V1: Fragment<u64, Profile> = user("member", 1);
/// The rich type under the old shape version: a change nobody marked.
const RICH_MEMBER_V1: Fragment<u64, RichProfile> = user("member", 1);

/// A replica of BFF `bff` whose build declares `fragment`.
fn replica<V>(
    redis: &testkit::RedisServer,
    bff: &str,
    fragment: &Fragment<u64, V>,
) -> FragmentStore {
    FragmentStore::new(
        TieredCache::new(TieredConfig {
            redis_url: Some(redis.url()),
            namespace: bff.to_owned(),
            fragments: vec![fragment.policy()],
            ..TieredConfig::default()
        })
        .expect("cache"),
    )
}

/// Stores `value` as `fragment`'s of `key` and waits until Redis has it
/// (the shared tier is written in the background).
async fn store<V>(
    redis: &testkit::RedisServer,
    store: &FragmentStore,
    fragment: &Fragment<u64, V>,
    key: u64,
    value: V,
) where
    V: Serialize + Send + Sync + 'static,
{
    let keys_before = redis_keys(redis).await;
    store
        .cache()
        .put(
            &store.policy_of(fragment),
            &fragment.key(&key),
            &[],
            Arc::new(value),
        )
        .await;
    let started = Instant::now();
    while redis_keys(redis).await == keys_before && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn redis_keys(redis: &testkit::RedisServer) -> Vec<String> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.sort();
    keys
}

async fn get<V>(
    store: &FragmentStore,
    fragment: &Fragment<u64, V>,
    key: u64,
) -> Option<(Arc<V>, Tier)>
where
    V: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    store
        .cache()
        .get::<V>(&store.policy_of(fragment), &fragment.key(&key))
        .await
        .map(|hit| (hit.value, hit.tier))
}

/// The undecodable count of `kind` so far (the recorder is the process's:
/// read it before and after).
fn undecodable(kind: &str) -> u64 {
    let text = bff_telemetry::prometheus().render();
    let series = format!("bff_cache_undecodable_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_bffs_on_one_redis_never_read_each_others_entries() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    bff_telemetry::prometheus();
    let mobile = replica(&redis, "bff-mobile", &USER_V1);
    let web = replica(&redis, "bff-web", &RICH_USER_V2);
    let before = undecodable("user");
    store(&redis, &mobile, &USER_V1, 7, Profile { name: "Ada".into() }).await;
    store(
        &redis,
        &web,
        &RICH_USER_V2,
        7,
        RichProfile {
            name: "Ada L.".into(),
            loyalty_points: 5,
        },
    )
    .await;
    assert_eq!(
        redis_keys(&redis).await,
        ["bff-mobile:fm1:user:7", "bff-web:fm2:user:7"],
        "each BFF's key in its own namespace, with its kind's shape"
    );
    let (cold_mobile, cold_web) = (
        replica(&redis, "bff-mobile", &USER_V1),
        replica(&redis, "bff-web", &RICH_USER_V2),
    );
    let (profile, tier) = get(&cold_mobile, &USER_V1, 7).await.expect("mobile's own");
    assert_eq!((profile.name.as_str(), tier), ("Ada", Tier::Shared));
    let (rich, tier) = get(&cold_web, &RICH_USER_V2, 7).await.expect("web's own");
    assert_eq!((rich.loyalty_points, tier), (5, Tier::Shared));
    assert_eq!(undecodable("user"), before, "nobody met another's entry");
}

#[tokio::test]
async fn releases_share_entries_while_their_shape_is_the_same() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    bff_telemetry::prometheus();
    let before = undecodable("user");
    let (old, same) = (
        replica(&redis, "bff-web", &USER_V1),
        replica(&redis, "bff-web", &USER_V1),
    );
    store(&redis, &old, &USER_V1, 1, Profile { name: "Ada".into() }).await;
    let (hit, tier) = get(&same, &USER_V1, 1).await.expect("a shared hit");
    assert_eq!((hit.name.as_str(), tier), ("Ada", Tier::Shared));

    // A release with another shape: its own entries, no decode error.
    let new = replica(&redis, "bff-web", &RICH_USER_V2);
    assert!(
        get(&new, &RICH_USER_V2, 1).await.is_none(),
        "not the old shape's"
    );
    store(
        &redis,
        &new,
        &RICH_USER_V2,
        1,
        RichProfile {
            name: "Ada".into(),
            loyalty_points: 9,
        },
    )
    .await;
    assert_eq!(
        get(&replica(&redis, "bff-web", &RICH_USER_V2), &RICH_USER_V2, 1)
            .await
            .map(|(v, _)| v.loyalty_points),
        Some(9)
    );
    let fresh_old = replica(&redis, "bff-web", &USER_V1);
    assert_eq!(
        get(&fresh_old, &USER_V1, 1)
            .await
            .map(|(v, _)| v.name.clone())
            .as_deref(),
        Some("Ada"),
        "the old release keeps its own entry during the roll-out"
    );
    assert_eq!(undecodable("user"), before, "the two shapes never met");
}

#[tokio::test]
async fn an_entry_that_does_not_decode_is_counted_never_served_and_replaced() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    bff_telemetry::prometheus();
    let old = replica(&redis, "bff-web", &MEMBER_V1);
    store(&redis, &old, &MEMBER_V1, 3, Profile { name: "Ada".into() }).await;

    // The new build changed the type but not the shape version.
    let new = replica(&redis, "bff-web", &RICH_MEMBER_V1);
    let before = undecodable("member");
    assert!(
        get(&new, &RICH_MEMBER_V1, 3).await.is_none(),
        "never served"
    );
    assert_eq!(undecodable("member"), before + 1, "counted");
    let loaded = new
        .cache()
        .get_or_load(
            &new.policy_of(&RICH_MEMBER_V1),
            &RICH_MEMBER_V1.key(&3),
            &[],
            async {
                Ok::<_, std::convert::Infallible>(RichProfile {
                    name: "Ada".into(),
                    loyalty_points: 1,
                })
            },
        )
        .await
        .map_err(|_| "load failed")
        .expect("loaded");
    assert_eq!(
        (loaded.value.loyalty_points, loaded.tier),
        (1, Tier::Loaded)
    );
    let started = Instant::now();
    loop {
        let other = replica(&redis, "bff-web", &RICH_MEMBER_V1);
        if let Some((value, Tier::Shared)) = get(&other, &RICH_MEMBER_V1, 3).await {
            assert_eq!(value.loyalty_points, 1, "replaced by the new build's load");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the entry was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
