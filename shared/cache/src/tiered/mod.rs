//! The two-tier fragment store: an in-process tier (moka, bounded by bytes)
//! in front of an optional shared tier (Redis), with per-kind freshness
//! policies, single-flight loads of cold keys, and invalidation by key and
//! by tag that reaches every replica.
//!
//! Why two tiers: the in-process tier answers in well under a microsecond
//! and needs no network, so it serves the hot keys; the shared tier lets a
//! fleet of replicas load each fragment once instead of once per replica,
//! and survives a replica's restart. Redis is an optimisation, never a
//! dependency: every Redis call has a short timeout, an error is counted
//! and logged, and the store then behaves as if Redis were not configured
//! until the connection comes back by itself.
//!
//! A fragment's life follows its kind's [`FragmentPolicy`]: **fresh** for
//! `fresh_for` (served without asking the upstream), then **revalidate**
//! for `revalidate_for` (served, and refreshed once in the background by the
//! caller), then **stale** for `stale_for` (served only when the upstream
//! fails), then gone. Ages are measured from when the upstream answered, so
//! a fragment loaded by one replica is as old in every other.
//!
//! Keys come from typed [`Fragment`](crate::fragment::Fragment)
//! declarations and carry the subject for per-user data. In Redis every key,
//! tag and channel is namespaced by the BFF ([`TieredConfig::namespace`]),
//! and every fragment's key also by its kind's shape version, so that every
//! BFF kind and every release can share one Redis: two BFFs never read each
//! other's entries, and two releases whose fragment types differ never
//! decode each other's. An entry that does not decode all the same (a shape
//! changed without a new version) is counted
//! (`bff_cache_undecodable_total`), never served, and replaced by the next
//! load.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bff_telemetry::names;
use redis::AsyncCommands;

use crate::fragment::{Fragment, KeyPart};
pub use crate::policy::{FragmentPolicy, Freshness, Invalidation};

mod invalidation;
mod lookup;
mod metrics_series;
mod redis_tier;
mod single_flight;

use metrics_series::{SHARED_OPS, zero_series};
use serde::Serialize;
use serde::de::DeserializeOwned;
use single_flight::Running;

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This process.
    Local,
    /// Redis (the fragment now fills the local tier too).
    Shared,
    /// Neither: loaded just now, by this call or by the load it joined.
    Loaded,
}

/// A cached fragment.
#[derive(Debug)]
pub struct Cached<T> {
    /// The value.
    pub value: Arc<T>,
    /// Time since the upstream answered.
    pub age: Duration,
    /// How usable it is.
    pub freshness: Freshness,
    /// Where it came from.
    pub tier: Tier,
}

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    stored_at_ms: u64,
    policy: FragmentPolicy,
    weight: u32,
    /// Its tags, so the tag index forgets it when it goes.
    tags: Option<Arc<[String]>>,
}

/// The keys stored with each tag, in this process.
type TagIndex = Arc<parking_lot::Mutex<HashMap<String, std::collections::HashSet<String>>>>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn age_of(stored_at_ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(stored_at_ms))
}

/// The store and the policy in force for each kind of fragment the BFF
/// declared ([`TieredConfig::fragments`]): what a section needs to cache.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct FragmentStore {
    cache: TieredCache,
}

impl FragmentStore {
    /// The store over `cache`, with the policies it was configured with.
    pub fn new(cache: TieredCache) -> Self {
        FragmentStore { cache }
    }

    /// The store.
    pub fn cache(&self) -> &TieredCache {
        &self.cache
    }

    /// The policy in force for `fragment`: its configured one (with the
    /// environment's overrides) when the BFF declared its kind, else the
    /// one it is declared with.
    pub fn policy_of<K, V>(&self, fragment: &Fragment<K, V>) -> FragmentPolicy {
        let declared = fragment.policy();
        self.cache
            .inner
            .policies
            .iter()
            .find(|p| p.kind == declared.kind)
            .copied()
            .unwrap_or(declared)
    }

    /// Forgets the fragment of `key`, here, in Redis and in every replica.
    pub async fn invalidate<K: KeyPart, V>(&self, fragment: &Fragment<K, V>, key: &K) {
        self.cache.invalidate(&fragment.key(key)).await;
    }
}

/// Configuration of the store.
#[derive(Debug, Clone)]
pub struct TieredConfig {
    /// Bytes the local tier may hold (serialised MessagePack with Redis, each
    /// policy's `approx_bytes` without).
    pub local_max_bytes: u64,
    /// How long the local tier keeps any fragment: the longest `keep_for`
    /// of the policies. (Each read still checks its own policy's windows;
    /// one time-to-live for all is cheaper on every insert than a timer per
    /// entry.)
    pub local_keep_for: Duration,
    /// `REDIS_URL`; `None` keeps everything in process.
    pub redis_url: Option<String>,
    /// Longest any Redis call may take.
    pub redis_timeout: Duration,
    /// Prefix of every Redis key, tag and of the invalidation channel: the
    /// BFF's name, so BFFs of different kinds sharing one Redis never read
    /// each other's entries.
    pub namespace: String,
    /// The kinds of fragment the BFF declared, with the policies in force:
    /// their shapes name their Redis keys, and their metrics exist (at
    /// zero) from the start.
    pub fragments: Vec<FragmentPolicy>,
    /// How long a replica that loads a fragment holds its short lock in
    /// Redis: the other replicas wanting the same fragment wait up to this
    /// long for its copy before loading it themselves.
    pub lock_for: Duration,
}

impl Default for TieredConfig {
    fn default() -> Self {
        TieredConfig {
            local_max_bytes: 64 * 1024 * 1024,
            local_keep_for: Duration::from_secs(600),
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            namespace: "bff".to_owned(),
            fragments: Vec::new(),
            lock_for: Duration::from_millis(200),
        }
    }
}

/// Why the store could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct TieredError(#[from] redis::RedisError);

/// Why [`TieredCache::get_or_load`] has no value.
#[derive(Debug)]
pub enum LoadError<E> {
    /// The load failed (shared by every caller that waited for it).
    Failed(Arc<E>),
    /// The load ended without an answer (it panicked; logged).
    Lost,
    /// A fragment of another type is stored under the key, or two callers
    /// load one key with different error types: the caller's keys collide
    /// (a bug, logged).
    Collision,
}

/// Why a cached copy was served although not fresh, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Within the revalidate window, while one background refresh runs.
    Revalidating,
    /// The upstream failed.
    UpstreamError,
}

impl StaleReason {
    fn label(self) -> &'static str {
        match self {
            StaleReason::Revalidating => "revalidating",
            StaleReason::UpstreamError => "upstream_error",
        }
    }
}

/// Maps a message on a channel to the keys and tags it invalidates.
pub type EventMapper = Arc<dyn Fn(&[u8]) -> Vec<Invalidation> + Send + Sync>;

impl Invalidation {
    fn encode(&self) -> String {
        match self {
            Invalidation::Key(k) => format!("key:{k}"),
            Invalidation::Tag(t) => format!("tag:{t}"),
        }
    }

    fn decode(raw: &str) -> Option<Self> {
        if let Some(k) = raw.strip_prefix("key:") {
            Some(Invalidation::Key(k.to_owned()))
        } else {
            raw.strip_prefix("tag:")
                .map(|t| Invalidation::Tag(t.to_owned()))
        }
    }
}

struct Shared {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    timeout: Duration,
}

struct Inner {
    local: moka::future::Cache<String, Entry>,
    /// The loads and refreshes running in this process, by key: one per key.
    in_flight: parking_lot::Mutex<HashMap<String, Running>>,
    lock_for: Duration,
    /// The keys stored with each tag (only fragments stored with tags pay
    /// for this).
    tagged: TagIndex,
    shared: Option<Shared>,
    namespace: String,
    /// The declared kinds' policies.
    policies: Arc<[FragmentPolicy]>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("local_bytes", &self.inner.local.weighted_size())
            .field("shared", &self.inner.shared.is_some())
            .finish()
    }
}

impl TieredCache {
    /// Builds the store. With a Redis URL, the connection is made lazily
    /// and re-made by itself; a Redis that is down at start is not an
    /// error. Must run inside a Tokio runtime.
    pub fn new(config: TieredConfig) -> Result<Self, TieredError> {
        let tagged = TagIndex::default();
        let index = tagged.clone();
        let local = moka::future::Cache::builder()
            .max_capacity(config.local_max_bytes)
            .weigher(|_key: &String, entry: &Entry| entry.weight)
            .time_to_live(config.local_keep_for)
            .eviction_listener(move |key: Arc<String>, entry: Entry, cause| {
                use moka::notification::RemovalCause;
                // A replaced entry's key is still stored (its new tags were
                // indexed before the insert).
                if cause != RemovalCause::Replaced
                    && let Some(tags) = &entry.tags
                {
                    let mut index = index.lock();
                    for tag in tags.iter() {
                        if let Some(keys) = index.get_mut(tag) {
                            keys.remove(key.as_str());
                            if keys.is_empty() {
                                index.remove(tag);
                            }
                        }
                    }
                }
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    // Invalidations are counted where they are asked for.
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                metrics::counter!(names::CACHE_EVICTIONS, "kind" => entry.policy.kind, "cause" => cause)
                    .increment(1);
            })
            .build();
        let shared = match &config.redis_url {
            None => None,
            Some(url) => {
                let (client, conn) = bff_redis::connect(url, config.redis_timeout)?;
                Some(Shared {
                    client,
                    conn,
                    timeout: config.redis_timeout,
                })
            }
        };
        for policy in &config.fragments {
            zero_series(policy.kind);
        }
        if shared.is_some() {
            for op in SHARED_OPS {
                metrics::counter!(names::CACHE_SHARED_ERRORS, "op" => op).increment(0);
            }
        }
        Ok(TieredCache {
            inner: Arc::new(Inner {
                local,
                in_flight: parking_lot::Mutex::default(),
                lock_for: config.lock_for,
                tagged,
                shared,
                namespace: config.namespace,
                policies: config.fragments.into(),
            }),
        })
    }

    /// The shape of `key`'s kind (the text before its first `:`); 0 for a
    /// kind this BFF did not declare.
    fn shape_of(&self, key: &str) -> u16 {
        let kind = key.split(':').next().unwrap_or_default();
        self.inner
            .policies
            .iter()
            .find(|p| p.kind == kind)
            .map_or(0, |p| p.shape)
    }

    /// Whether a shared tier is configured.
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    /// Bytes held by the local tier (after [`sync`](Self::sync)).
    pub fn local_bytes(&self) -> u64 {
        self.inner.local.weighted_size()
    }

    /// Applies pending evictions (for tests and shutdown).
    pub async fn sync(&self) {
        self.inner.local.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FragmentPolicy = FragmentPolicy {
        kind: "t",
        shape: 1,
        fresh_for: Duration::from_secs(60),
        revalidate_for: Duration::ZERO,
        stale_for: Duration::ZERO,
        approx_bytes: 1024,
        per_user: false,
    };

    fn indexed(cache: &TieredCache) -> usize {
        cache
            .inner
            .tagged
            .lock()
            .values()
            .map(|keys| keys.len())
            .sum()
    }

    #[tokio::test]
    async fn the_tag_index_forgets_what_the_local_tier_no_longer_holds() {
        let cache = TieredCache::new(TieredConfig {
            local_max_bytes: 4 * 1024,
            ..TieredConfig::default()
        })
        .expect("cache");
        let tags = ["product:1".to_owned(), "all".to_owned()];
        cache.put(&POLICY, "a", &tags, Arc::new(1u32)).await;
        cache.put(&POLICY, "b", &tags[1..], Arc::new(2u32)).await;
        assert_eq!(indexed(&cache), 3);
        cache.invalidate("a").await;
        cache.sync().await;
        assert_eq!(indexed(&cache), 1, "an invalidated key leaves the index");
        for i in 0..20 {
            cache
                .put(&POLICY, &format!("k{i}"), &tags[1..], Arc::new(i))
                .await;
        }
        cache.sync().await;
        assert!(
            indexed(&cache) <= 4,
            "evicted keys leave the index: {} indexed",
            indexed(&cache)
        );
    }
}
