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
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a kind of fragment may be served, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPolicy {
    /// The kind, for metrics (`user`, `price`, …).
    pub kind: &'static str,
    /// The version of the stored value's shape: part of the fragment's
    /// Redis key, so releases of one BFF whose value types differ never
    /// decode each other's entries.
    pub shape: u16,
    /// Served without asking the upstream.
    pub fresh_for: Duration,
    /// Then served while one background refresh runs.
    pub revalidate_for: Duration,
    /// Then served only when the upstream fails.
    pub stale_for: Duration,
    /// What one fragment weighs in the local tier when it is not
    /// serialised for Redis (without Redis, weighing each fragment by
    /// serialising it would cost ~10 µs per dashboard on every store).
    pub approx_bytes: u32,
    /// Whether the fragment belongs to one user (its key then carries the
    /// subject): a response built from it may only be cached privately.
    pub per_user: bool,
}

impl FragmentPolicy {
    /// How long a fragment is kept at all.
    pub fn keep_for(&self) -> Duration {
        self.fresh_for + self.revalidate_for + self.stale_for
    }

    /// How usable a fragment of this age is; `None` once it may not be
    /// served at all.
    pub fn freshness(&self, age: Duration) -> Option<Freshness> {
        if age < self.fresh_for {
            Some(Freshness::Fresh)
        } else if age < self.fresh_for + self.revalidate_for {
            Some(Freshness::Revalidate)
        } else if age < self.keep_for() {
            Some(Freshness::Stale)
        } else {
            None
        }
    }
}

/// How usable a cached fragment is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Revalidate,
    /// Serve it only if the upstream fails.
    Stale,
}

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
type TagIndex = Arc<std::sync::Mutex<HashMap<String, std::collections::HashSet<String>>>>;

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

/// What one load in flight resolves to, shared by every caller waiting for
/// it: the stored entry, or the error erased to its type (downcast by each
/// caller), or `None` when the load task was lost.
type LoadOutcome = Result<Entry, Option<Arc<dyn Any + Send + Sync>>>;
type InFlight = futures::future::Shared<futures::future::BoxFuture<'static, LoadOutcome>>;

/// A load running in this process.
struct Running {
    outcome: InFlight,
    /// Its fragment's tags.
    tags: Arc<[String]>,
    /// Set when its key (or one of its tags) is invalidated while it runs:
    /// what it read may predate the change, so it is served to its waiters
    /// and not kept.
    overtaken: Arc<std::sync::atomic::AtomicBool>,
}

/// The Redis operations, whose error series exist from the start.
const SHARED_OPS: [&str; 8] = [
    "get",
    "set",
    "lock",
    "unlock",
    "del",
    "del_tag",
    "publish",
    "subscribe",
];

/// Registers the series of `kind` at zero, so dashboards and alerts see 0
/// rather than no data before its first lookup.
fn zero_series(kind: &'static str) {
    for (result, tier) in [
        ("hit", "local"),
        ("hit", "shared"),
        ("stale", "local"),
        ("stale", "shared"),
        ("miss", "none"),
    ] {
        metrics::counter!(names::CACHE_FRAGMENTS, "kind" => kind, "result" => result, "tier" => tier)
            .increment(0);
    }
    for reason in [StaleReason::Revalidating, StaleReason::UpstreamError] {
        metrics::counter!(names::CACHE_STALE_SERVED, "kind" => kind, "reason" => reason.label())
            .increment(0);
    }
    for trigger in ["miss", "refresh"] {
        for source in ["upstream", "replica"] {
            metrics::counter!(names::CACHE_LOADS, "kind" => kind, "trigger" => trigger, "source" => source)
                .increment(0);
        }
    }
    for cause in ["size", "expired"] {
        metrics::counter!(names::CACHE_EVICTIONS, "kind" => kind, "cause" => cause).increment(0);
    }
    metrics::counter!(names::CACHE_UNDECODABLE, "kind" => kind).increment(0);
}

/// How often a replica waiting on another's lock looks for its copy.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// What a load may do about the other replicas.
enum Lock {
    /// No Redis, or it failed, or the holder's copy did not come in time:
    /// load without a lock.
    Free,
    /// This replica holds the key's lock: load, then release it.
    Held,
    /// The replica that held the lock stored this copy meanwhile.
    Copy(Entry),
}

/// Maps a message on a channel to the keys and tags it invalidates.
pub type EventMapper = Arc<dyn Fn(&[u8]) -> Vec<Invalidation> + Send + Sync>;

/// One thing to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One fragment.
    Key(String),
    /// Every fragment stored with this tag.
    Tag(String),
}

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
    in_flight: std::sync::Mutex<HashMap<String, Running>>,
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

/// A fragment as stored in Redis: when the upstream answered, its tags
/// (so a replica that reads it indexes them too), the value.
#[derive(Serialize)]
struct Envelope<'a, T> {
    t: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    g: &'a [String],
    v: &'a T,
}

#[derive(serde::Deserialize)]
struct OwnedEnvelope<T> {
    t: u64,
    #[serde(default)]
    g: Vec<String>,
    v: T,
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
                    let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
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
                in_flight: std::sync::Mutex::default(),
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

    /// `{bff}:fm{shape}:{key}`: `fm`, fragments in MessagePack (another
    /// encoding gets another prefix), then the shape version of the key's
    /// kind, so releases whose value types differ never read each other's.
    fn shared_key(&self, key: &str) -> String {
        format!("{}:fm{}:{key}", self.inner.namespace, self.shape_of(key))
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:l{}:{key}", self.inner.namespace, self.shape_of(key))
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}:t:{tag}", self.inner.namespace)
    }

    fn channel(&self) -> String {
        format!("{}.cache.invalidate", self.inner.namespace)
    }

    /// Runs one Redis command with the timeout, counting and logging a
    /// failure; `None` when it failed.
    async fn redis<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let shared = self.inner.shared.as_ref()?;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(shared.timeout, command(shared.conn.clone())).await;
        metrics::histogram!(names::CACHE_SHARED_DURATION, "op" => op)
            .record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", shared.timeout),
        };
        metrics::counter!(names::CACHE_SHARED_ERRORS, "op" => op).increment(1);
        tracing::warn!(op, %error, "shared cache call failed; going on without it");
        None
    }

    /// The fragment under `key`: this process's copy while it is fresh;
    /// otherwise the newer of it and Redis's (which then fills this
    /// process), so a copy another replica refreshed is picked up here.
    /// `None` when neither has a usable copy.
    pub async fn get<T>(&self, policy: &FragmentPolicy, key: &str) -> Option<Cached<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let local = self.inner.local.get(key).await;
        let local_is_fresh = local
            .as_ref()
            .is_some_and(|e| e.policy.freshness(age_of(e.stored_at_ms)) == Some(Freshness::Fresh));
        let found = if local_is_fresh || self.inner.shared.is_none() {
            local.and_then(|e| Self::typed(e, Tier::Local))
        } else {
            let newer_than = local.as_ref().map(|e| e.stored_at_ms);
            match self.get_shared::<T>(policy, key, newer_than).await {
                Some(entry) => Self::typed(entry, Tier::Shared),
                None => local.and_then(|e| Self::typed(e, Tier::Local)),
            }
        };
        let result = match &found {
            Some(c) if c.freshness == Freshness::Stale => "stale",
            Some(_) => "hit",
            None => "miss",
        };
        let tier = match &found {
            Some(Cached {
                tier: Tier::Shared, ..
            }) => "shared",
            Some(_) => "local",
            None => "none",
        };
        metrics::counter!(names::CACHE_FRAGMENTS, "kind" => policy.kind, "result" => result, "tier" => tier)
            .increment(1);
        found
    }

    /// Counts a copy served although not fresh.
    pub fn served_stale(&self, policy: &FragmentPolicy, reason: StaleReason) {
        metrics::counter!(names::CACHE_STALE_SERVED, "kind" => policy.kind, "reason" => reason.label())
            .increment(1);
    }

    fn typed<T: Send + Sync + 'static>(entry: Entry, tier: Tier) -> Option<Cached<T>> {
        let age = age_of(entry.stored_at_ms);
        let freshness = entry.policy.freshness(age)?;
        let value = entry.value.downcast::<T>().ok()?;
        Some(Cached {
            value,
            age,
            freshness,
            tier,
        })
    }

    /// Redis's copy of `key` if it is usable and stored after
    /// `newer_than`; it then fills this process too.
    async fn get_shared<T>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        newer_than: Option<u64>,
    ) -> Option<Entry>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.inner.shared.as_ref()?;
        let shared_key = self.shared_key(key);
        let bytes: Option<Vec<u8>> = self
            .redis("get", |mut c| async move { c.get(shared_key).await })
            .await
            .flatten();
        let bytes = bytes?;
        let envelope: OwnedEnvelope<T> = match rmp_serde::from_slice(&bytes) {
            Ok(e) => e,
            Err(error) => {
                // Another shape under the same version: never served; the
                // next load replaces it.
                metrics::counter!(names::CACHE_UNDECODABLE, "kind" => policy.kind).increment(1);
                tracing::warn!(key, %error, "undecodable shared fragment ignored (its shape changed without a new shape version?)");
                return None;
            }
        };
        if newer_than.is_some_and(|t| envelope.t <= t) {
            return None;
        }
        let entry = Entry {
            value: Arc::new(envelope.v),
            stored_at_ms: envelope.t,
            policy: *policy,
            weight: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            tags: (!envelope.g.is_empty()).then(|| envelope.g.as_slice().into()),
        };
        policy.freshness(age_of(entry.stored_at_ms))?;
        self.remember_tags(key, &envelope.g);
        self.inner.local.insert(key.to_owned(), entry.clone()).await;
        Some(entry)
    }

    /// Stores the fragment the upstream just answered with, here and (in
    /// the background) in Redis, with `tags` for invalidation by tag.
    pub async fn put<T>(&self, policy: &FragmentPolicy, key: &str, tags: &[String], value: Arc<T>)
    where
        T: Serialize + Send + Sync + 'static,
    {
        let (entry, bytes) = self.prepare(policy, key, tags, value);
        self.remember_tags(key, tags);
        self.inner.local.insert(key.to_owned(), entry).await;
        self.put_shared(policy, key, tags, bytes);
    }

    /// Whether this process holds a copy of `key` younger than `within`.
    /// A copy kept only to stand in for failures (a kind that is never
    /// served fresh) need not be rewritten then: a stand-in a moment old is
    /// as good as a new one, and not rewriting it saves most of a store's
    /// cost on every request (a partner batch would rewrite 150 of them).
    pub async fn holds_recent(&self, key: &str, within: Duration) -> bool {
        self.inner
            .local
            .get(key)
            .await
            .is_some_and(|entry| age_of(entry.stored_at_ms) < within)
    }

    /// The local entry of a fresh value, and its bytes for Redis when Redis
    /// is configured (their length then weighs the entry).
    fn prepare<T>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        value: Arc<T>,
    ) -> (Entry, Option<Vec<u8>>)
    where
        T: Serialize + Send + Sync + 'static,
    {
        let stored_at_ms = now_ms();
        let envelope = Envelope {
            t: stored_at_ms,
            g: tags,
            v: &*value,
        };
        let (weight, bytes) = if self.inner.shared.is_some() {
            match rmp_serde::to_vec_named(&envelope) {
                Ok(b) => (b.len(), Some(b)),
                Err(error) => {
                    tracing::warn!(key, %error, "fragment does not serialise; kept here only");
                    (policy.approx_bytes as usize, None)
                }
            }
        } else {
            (policy.approx_bytes as usize, None)
        };
        let entry = Entry {
            value,
            stored_at_ms,
            policy: *policy,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            tags: (!tags.is_empty()).then(|| tags.into()),
        };
        (entry, bytes)
    }

    fn remember_tags(&self, key: &str, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let mut tagged = self.inner.tagged.lock().unwrap_or_else(|p| p.into_inner());
        for tag in tags {
            tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.to_owned());
        }
    }

    fn put_shared(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        bytes: Option<Vec<u8>>,
    ) {
        let Some(bytes) = bytes else { return };
        let this = self.clone();
        let shared_key = self.shared_key(key);
        let ttl_ms = policy.keep_for().as_millis() as u64;
        let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        tokio::spawn(async move {
            this.redis("set", |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&shared_key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                for tag in &tag_keys {
                    pipe.cmd("SADD").arg(tag).arg(&shared_key).ignore();
                    pipe.cmd("PEXPIRE").arg(tag).arg(ttl_ms).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        });
    }

    /// The fragment under `key`, loading it with `load` when neither tier
    /// has a fresh copy:
    ///
    /// - fresh here or in Redis: served;
    /// - revalidating: served, and refreshed once in the background;
    /// - stale or missing: loaded, once per key in this process however
    ///   many callers wait, and with Redis once per key in the fleet while
    ///   the loading replica holds its short lock (the others wait for its
    ///   copy, up to [`TieredConfig::lock_for`]).
    ///
    /// A load runs as its own task, so it finishes and fills the cache even
    /// when every caller has gone (a client disconnected, a section timed
    /// out). A failed load is not cached; a stale copy, if any, is the
    /// caller's to fall back on ([`get`](Self::get)).
    pub async fn get_or_load<T, E, F>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        load: F,
    ) -> Result<Cached<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        match self.get::<T>(policy, key).await {
            Some(c) if c.freshness == Freshness::Fresh => return Ok(c),
            Some(c) if c.freshness == Freshness::Revalidate => {
                self.served_stale(policy, StaleReason::Revalidating);
                drop(self.load_once::<T, E, F>(policy, key, tags, load, "refresh"));
                return Ok(c);
            }
            _ => {}
        }
        match self
            .load_once::<T, E, F>(policy, key, tags, load, "miss")
            .await
        {
            Ok(entry) => Self::typed::<T>(entry, Tier::Loaded).ok_or_else(|| {
                tracing::error!(key, "two fragment types share one cache key");
                LoadError::Collision
            }),
            Err(Some(error)) => match error.downcast::<E>() {
                Ok(error) => Err(LoadError::Failed(error)),
                Err(_) => {
                    tracing::error!(key, "one cache key loaded with two error types");
                    Err(LoadError::Collision)
                }
            },
            Err(None) => Err(LoadError::Lost),
        }
    }

    /// Joins the load of `key` running in this process, or starts it as a
    /// task (`load` is dropped when one is running already).
    fn load_once<T, E, F>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        load: F,
        trigger: &'static str,
    ) -> InFlight
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        use futures::FutureExt;
        use tracing::Instrument;

        /// Takes the key out of the in-flight map when the task ends, even
        /// by a panic, so a lost load is retried by the next caller.
        struct Done(TieredCache, String);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0
                    .inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&self.1);
            }
        }

        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(running) = in_flight.get(key) {
            return running.outcome.clone();
        }
        let done = Done(self.clone(), key.to_owned());
        let (policy, tags): (FragmentPolicy, Arc<[String]>) = (*policy, tags.into());
        let overtaken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (task_tags, task_overtaken) = (tags.clone(), overtaken.clone());
        let task = tokio::spawn(
            async move {
                let this = done.0.clone();
                let outcome = this
                    .load_and_store::<T, E, F>(
                        &policy,
                        &done.1,
                        &task_tags,
                        load,
                        trigger,
                        &task_overtaken,
                    )
                    .await;
                drop(done);
                outcome
            }
            .in_current_span(),
        );
        let running = async move {
            task.await.unwrap_or_else(|error| {
                tracing::error!(%error, "a fragment load was lost");
                Err(None)
            })
        }
        .boxed()
        .shared();
        in_flight.insert(
            key.to_owned(),
            Running {
                outcome: running.clone(),
                tags,
                overtaken,
            },
        );
        running
    }

    async fn load_and_store<T, E, F>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        load: F,
        trigger: &'static str,
        overtaken: &std::sync::atomic::AtomicBool,
    ) -> LoadOutcome
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        // A caller may have missed just before the previous load stored its
        // copy and left the in-flight map: that copy is fresh, so serve it.
        if let Some(entry) = self.inner.local.get(key).await
            && entry.policy.freshness(age_of(entry.stored_at_ms)) == Some(Freshness::Fresh)
        {
            return Ok(entry);
        }
        let lock = match self.lock_or_wait::<T>(policy, key).await {
            Lock::Copy(entry) => {
                metrics::counter!(names::CACHE_LOADS, "kind" => policy.kind, "trigger" => trigger, "source" => "replica")
                    .increment(1);
                return Ok(entry);
            }
            lock => lock,
        };
        metrics::counter!(names::CACHE_LOADS, "kind" => policy.kind, "trigger" => trigger, "source" => "upstream")
            .increment(1);
        let value = match load.await {
            Ok(value) => Arc::new(value),
            Err(error) => {
                self.unlock(key, lock);
                return Err(Some(Arc::new(error)));
            }
        };
        let (entry, bytes) = self.prepare(policy, key, tags, value);
        if overtaken.load(std::sync::atomic::Ordering::Acquire) {
            // Its key or tag was invalidated while it ran: what it read may
            // predate that change, so it is served to its waiters and not
            // kept.
            self.unlock(key, lock);
            return Ok(entry);
        }
        self.remember_tags(key, tags);
        self.inner.local.insert(key.to_owned(), entry.clone()).await;
        self.put_shared(policy, key, tags, bytes);
        self.unlock(key, lock);
        Ok(entry)
    }

    /// With Redis, takes `key`'s short lock; when another replica holds
    /// it, waits (up to `lock_for`) for that replica's copy.
    async fn lock_or_wait<T>(&self, policy: &FragmentPolicy, key: &str) -> Lock
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if self.inner.shared.is_none() {
            return Lock::Free;
        }
        let lock_key = self.lock_key(key);
        let lock_ms = self.inner.lock_for.as_millis() as u64;
        let taken: Option<Option<String>> = self
            .redis("lock", |mut c| async move {
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match taken {
            Some(Some(_)) => return Lock::Held,
            // Redis failed: load here.
            None => return Lock::Free,
            Some(None) => {}
        }
        let started = now_ms();
        let until = tokio::time::Instant::now() + self.inner.lock_for;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(LOCK_POLL).await;
            let newer_than = started.saturating_sub(lock_ms);
            if let Some(entry) = self.get_shared::<T>(policy, key, Some(newer_than)).await {
                return Lock::Copy(entry);
            }
        }
        Lock::Free
    }

    fn unlock(&self, key: &str, lock: Lock) {
        if !matches!(lock, Lock::Held) {
            return;
        }
        let this = self.clone();
        let lock_key = self.lock_key(key);
        tokio::spawn(async move {
            this.redis(
                "unlock",
                |mut c| async move { c.del::<_, ()>(lock_key).await },
            )
            .await;
        });
    }
    /// Forgets `key` here, in Redis, and in every other replica.
    pub async fn invalidate(&self, key: &str) {
        self.forget(vec![Invalidation::Key(key.to_owned())]).await;
    }

    /// Forgets every fragment stored with `tag`, everywhere.
    pub async fn invalidate_tag(&self, tag: &str) {
        self.forget(vec![Invalidation::Tag(tag.to_owned())]).await;
    }

    /// Forgets each of `what` here, in Redis, and in every other replica.
    pub async fn forget(&self, what: Vec<Invalidation>) {
        for item in &what {
            self.forget_locally(item).await;
            metrics::counter!(names::CACHE_INVALIDATIONS, "by" => match item { Invalidation::Key(_) => "key", Invalidation::Tag(_) => "tag" })
                .increment(1);
        }
        if self.inner.shared.is_none() {
            return;
        }
        for item in what {
            match &item {
                Invalidation::Key(k) => {
                    let shared_key = self.shared_key(k);
                    self.redis(
                        "del",
                        |mut c| async move { c.del::<_, ()>(shared_key).await },
                    )
                    .await;
                }
                Invalidation::Tag(t) => {
                    let tag_key = self.tag_key(t);
                    self.redis("del_tag", |mut c| async move {
                        let keys: Vec<String> = c.smembers(&tag_key).await?;
                        let mut pipe = redis::pipe();
                        for k in keys {
                            pipe.cmd("DEL").arg(k).ignore();
                        }
                        pipe.cmd("DEL").arg(&tag_key).ignore();
                        pipe.query_async::<()>(&mut c).await
                    })
                    .await;
                }
            }
            let channel = self.channel();
            let message = item.encode();
            self.redis("publish", |mut c| async move {
                c.publish::<_, _, ()>(channel, message).await
            })
            .await;
        }
    }

    async fn forget_locally(&self, item: &Invalidation) {
        for running in self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(key, running)| match item {
                Invalidation::Key(k) => *key == k,
                Invalidation::Tag(t) => running.tags.contains(t),
            })
            .map(|(_, running)| running)
        {
            running
                .overtaken
                .store(true, std::sync::atomic::Ordering::Release);
        }
        match item {
            Invalidation::Key(k) => self.inner.local.invalidate(k).await,
            Invalidation::Tag(t) => {
                let keys = self
                    .inner
                    .tagged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(t)
                    .unwrap_or_default();
                for key in keys {
                    self.inner.local.invalidate(&key).await;
                }
            }
        }
    }

    /// Listens, in the background, to the invalidations other replicas
    /// publish and to the `events` channels (each mapped to what it
    /// invalidates, e.g. a price change to that product's price fragment),
    /// reconnecting with backoff whenever Redis goes away. Without Redis,
    /// does nothing: in-process invalidations are already applied.
    pub fn listen(&self, events: HashMap<String, EventMapper>) {
        let Some(shared) = self.inner.shared.as_ref() else {
            return;
        };
        let client = shared.client.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let own = this.channel();
            let mut backoff = Duration::from_millis(100);
            loop {
                match this.subscribe(&client, &own, &events).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        metrics::counter!(names::CACHE_SHARED_ERRORS, "op" => "subscribe")
                            .increment(1);
                        tracing::warn!(%error, "invalidation channel lost; reconnecting");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// One subscription, until the connection ends.
    async fn subscribe(
        &self,
        client: &redis::Client,
        own: &str,
        events: &HashMap<String, EventMapper>,
    ) -> redis::RedisResult<()> {
        use futures::StreamExt;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(own).await?;
        for channel in events.keys() {
            pubsub.subscribe(channel).await?;
        }
        tracing::info!(channel = own, "listening for cache invalidations");
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let channel = message.get_channel_name().to_owned();
            let payload = message.get_payload_bytes();
            let items = if channel == own {
                std::str::from_utf8(payload)
                    .ok()
                    .and_then(Invalidation::decode)
                    .into_iter()
                    .collect()
            } else if let Some(map) = events.get(&channel) {
                map(payload)
            } else {
                Vec::new()
            };
            // The sender cleared its own shape's copy; a release of another
            // shape clears its own (idempotent), and events from elsewhere
            // clear Redis too.
            for item in &items {
                if let Invalidation::Key(k) = item {
                    let shared_key = self.shared_key(k);
                    self.redis(
                        "del",
                        |mut c| async move { c.del::<_, ()>(shared_key).await },
                    )
                    .await;
                }
            }
            for item in &items {
                self.forget_locally(item).await;
                metrics::counter!(names::CACHE_INVALIDATIONS, "by" => "event").increment(1);
            }
        }
        Ok(())
    }

    /// Applies pending evictions (for tests and shutdown).
    pub async fn sync(&self) {
        self.inner.local.run_pending_tasks().await;
    }

    /// Bytes held by the local tier (after [`sync`](Self::sync)).
    pub fn local_bytes(&self) -> u64 {
        self.inner.local.weighted_size()
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
            .map(|t| t.values().map(|keys| keys.len()).sum())
            .unwrap_or_default()
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
