//! Gateway aggregation: one client request, several upstream *sections*
//! fetched concurrently, one response that says exactly what went wrong.
//!
//! A handler declares each section — its name, whether the response is
//! worthless without it (critical), its deadline, and the kind and key of
//! its cached fragment (served while fresh, refreshed in the background
//! while it revalidates, standing in when the fetch fails) — then awaits
//! them together:
//!
//! ```
//! # use bff_aggregate::{Aggregation, Deadlines};
//! # use bff_upstream::UpstreamError;
//! # use bff_cache::fragment::Fragment;
//! # use std::time::Duration;
//! /// Declared once, in the BFF's crate: a user's name, by user id.
//! const USER: Fragment<u64, String> = Fragment::per_user("user", 1)
//!     .fresh_for(Duration::from_secs(30))
//!     .stale_for(Duration::from_secs(600));
//! # async fn example(store: bff_cache::tiered::FragmentStore) -> Result<(), bff_problem::ApiError> {
//! let agg = Aggregation::new(store, Deadlines::default(), "/v1/dashboard");
//! let (user, orders) = tokio::join!(
//!     agg.critical("user").cached(&USER, &42)
//!         .run(async { Ok::<_, UpstreamError>("Ada".to_owned()) }),
//!     agg.optional("orders")
//!         .run(async { Ok::<_, UpstreamError>(vec![1, 2, 3]) }),
//! );
//! let user = user.required()?;           // 404 / 503 decided here
//! let orders = orders.into_value();      // None when it failed
//! let metadata = agg.metadata()?;        // partialFailures, degraded, stale, reasons
//! # let _ = (user, orders, metadata); Ok(()) }
//! ```
//!
//! Each section's deadline reaches every upstream call made inside it
//! ([`bff_upstream::budget`]), together with its criticality, so an
//! upstream's timeout is cut to what the section has left and optional
//! calls are shed first when an upstream saturates.
//!
//! A client may prefer failure to a partial answer (`Prefer:
//! handling=strict`, RFC 7240): a strict aggregation answers
//! [`metadata`](Aggregation::metadata) with a 503 naming the failed
//! sections instead.
//!
//! What the sections served also says how the response may be reused
//! ([`Reuse`], for `Cache-Control`): privately when any of them is per-user
//! data, for the shortest freshness left, and not at all when partial.
//!
//! Rules (the contract's "Partial responses"): each section has its own
//! deadline inside the request's; a failed section is served from a stale
//! cached copy when one exists, else it is `None`; the response is 200 while
//! the critical section has data, 404 when its service says it does not
//! exist, and 503 with `Retry-After` when there is no data at all.

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bff_cache::fragment::{Fragment, KeyPart};
use bff_cache::tiered::{FragmentPolicy, FragmentStore, Freshness, LoadError, StaleReason, Tier};
use bff_problem::ApiError;
use bff_telemetry::names;
use bff_upstream::budget::{self, Budget};
use bff_upstream::{Failure, UpstreamError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

pub use bff_upstream::Criticality;

/// Seconds a client is told to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// A copy kept only to stand in for failures is not rewritten while this
/// process holds one younger than this (price changes still evict it).
pub const STAND_IN_REFRESH: Duration = Duration::from_secs(1);

/// How long sections may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole request: every section ends within it.
    pub request: Duration,
    /// A critical section.
    pub critical: Duration,
    /// An optional section.
    pub optional: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            request: Duration::from_millis(2500),
            critical: Duration::from_millis(500),
            optional: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
struct Outcome {
    name: &'static str,
    failure: Option<Failure>,
    stale: bool,
    /// How long the data served may still be reused (zero: not at all).
    reusable_for: Duration,
    /// Whether the data belongs to one user (or is not known not to).
    per_user: bool,
}

/// How a client (or a cache between it and us) may reuse a response, from
/// what its sections served: for the `Cache-Control` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A section failed: the response describes a passing failure.
    NoStore,
    /// Every section is reusable for `max_age`; `private` when one of them
    /// belongs to a user (or is not cached, so not known not to).
    For {
        /// Whether only the client itself may keep it.
        private: bool,
        /// The shortest time any section may still be reused.
        max_age: Duration,
    },
}

impl Reuse {
    /// The `Cache-Control` value.
    pub fn header_value(self) -> String {
        match self {
            Reuse::NoStore => "no-store".to_owned(),
            Reuse::For { private, max_age } => {
                let scope = if private { "private" } else { "public" };
                match max_age.as_secs() {
                    0 => format!("{scope}, no-cache"),
                    secs => format!("{scope}, max-age={secs}"),
                }
            }
        }
    }
}

/// Reads, after the handler has run, how the response may be reused
/// ([`Aggregation::reuse_handle`]).
#[derive(Debug, Clone)]
pub struct ReuseHandle(Arc<Mutex<Vec<Outcome>>>);

impl ReuseHandle {
    /// What the sections run so far allow; `None` before any ran.
    pub fn reuse(&self) -> Option<Reuse> {
        reuse_of(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn reuse_of(outcomes: &[Outcome]) -> Option<Reuse> {
    if outcomes.is_empty() {
        return None;
    }
    if outcomes.iter().any(|o| o.failure.is_some()) {
        return Some(Reuse::NoStore);
    }
    Some(Reuse::For {
        private: outcomes.iter().any(|o| o.per_user),
        max_age: outcomes
            .iter()
            .map(|o| o.reusable_for)
            .min()
            .unwrap_or_default(),
    })
}

/// One client request's aggregation.
#[derive(Debug)]
pub struct Aggregation {
    store: FragmentStore,
    started: Instant,
    deadlines: Deadlines,
    route: Arc<str>,
    strict: bool,
    /// Whether this request's trace is sampled: sections of a trace that is
    /// not recorded get no span at all.
    traced: bool,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl Aggregation {
    /// Starts an aggregation whose sections all finish within
    /// `deadlines.request` from now. `route` labels the metrics.
    pub fn new(store: FragmentStore, deadlines: Deadlines, route: impl Into<Arc<str>>) -> Self {
        Aggregation {
            store,
            started: Instant::now(),
            deadlines,
            route: route.into(),
            strict: false,
            traced: true,
            outcomes: Arc::default(),
        }
    }

    /// Whether the client prefers a failure to a partial answer.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Whether the request's trace is sampled (default: yes). A sampler
    /// that drops a trace then costs one span per request, not one per
    /// section and call.
    pub fn traced(mut self, traced: bool) -> Self {
        self.traced = traced;
        self
    }

    /// A section the response cannot do without (the critical deadline).
    pub fn critical(&self, name: &'static str) -> SectionSpec<'_> {
        SectionSpec {
            agg: self,
            name,
            criticality: Criticality::Critical,
            deadline: self.deadlines.critical,
            cache: None,
        }
    }

    /// A section the response can do without (the optional deadline).
    pub fn optional(&self, name: &'static str) -> SectionSpec<'_> {
        SectionSpec {
            agg: self,
            name,
            criticality: Criticality::Optional,
            deadline: self.deadlines.optional,
            cache: None,
        }
    }

    /// How the response may be reused, readable after the handler has
    /// consumed the aggregation (the edge sets `Cache-Control` from it).
    pub fn reuse_handle(&self) -> ReuseHandle {
        ReuseHandle(self.outcomes.clone())
    }

    fn record(&self, outcome: Outcome) {
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(outcome);
    }

    /// What happened to every section run so far, for the response body.
    /// A strict aggregation with a failed section is a 503 naming them.
    pub fn metadata(&self) -> Result<Metadata, ApiError> {
        let metadata = self.report();
        if self.strict && metadata.partial_failures > 0 {
            let failed: Vec<String> = metadata
                .reasons
                .iter()
                .map(|(section, reason)| format!("{section} ({reason})"))
                .collect();
            return Err(ApiError::unavailable(
                format!(
                    "handling=strict was asked and these sections failed: {}",
                    failed.join(", ")
                ),
                RETRY_AFTER_SECS,
            ));
        }
        Ok(metadata)
    }

    fn report(&self) -> Metadata {
        let outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let mut metadata = Metadata {
            timestamp: now_rfc3339(),
            partial_failures: 0,
            degraded: Vec::new(),
            stale: Vec::new(),
            reasons: BTreeMap::new(),
        };
        for outcome in outcomes.iter() {
            if let Some(failure) = outcome.failure {
                metadata.partial_failures += 1;
                metadata.degraded.push(outcome.name);
                metadata.reasons.insert(outcome.name, failure.reason());
                if outcome.stale {
                    metadata.stale.push(outcome.name);
                }
            }
        }
        if metadata.partial_failures > 0 {
            metrics::counter!(names::PARTIAL_RESPONSES, "route" => self.route.to_string())
                .increment(1);
        }
        metadata
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// A section being declared.
#[derive(Debug)]
#[must_use = "a section does nothing until run"]
pub struct SectionSpec<'a> {
    agg: &'a Aggregation,
    name: &'static str,
    criticality: Criticality,
    deadline: Duration,
    /// The fragment's policy in force, key and tags.
    cache: Option<(FragmentPolicy, String, Vec<String>)>,
}

/// A section whose value is the cached fragment declared for it: its fetch
/// must produce that fragment's value type.
#[derive(Debug)]
#[must_use = "a section does nothing until run"]
pub struct CachedSection<'a, V> {
    spec: SectionSpec<'a>,
    value: std::marker::PhantomData<fn() -> V>,
}

impl<V> CachedSection<'_, V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Another deadline than the criticality's default (still within the
    /// request's).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.spec.deadline = deadline;
        self
    }

    /// Serves the section from the cache as its fragment's policy says,
    /// fetching it with `fetch` when that is needed. The fetch owns what it
    /// needs: a cached one may finish in the background.
    pub async fn run<F>(self, fetch: F) -> Section<V>
    where
        F: Future<Output = Result<V, UpstreamError>> + Send + 'static,
    {
        self.spec.run(fetch).await
    }
}

impl<'a> SectionSpec<'a> {
    /// Another deadline than the criticality's default (still within the
    /// request's).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// This section's value is `fragment`'s of `key`. While its policy
    /// says it is fresh it is served without a call; while it revalidates it
    /// is served and refreshed once in the background; otherwise it is
    /// fetched (once per key however many requests want it) and stored with
    /// the fragment's tags, and a stale copy stands in when the fetch fails.
    /// A per-user fragment's key carries the subject.
    pub fn cached<K: KeyPart, V>(
        mut self,
        fragment: &Fragment<K, V>,
        key: &K,
    ) -> CachedSection<'a, V>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.cache = Some((
            self.agg.store.policy_of(fragment),
            fragment.key(key),
            fragment.tags(key),
        ));
        CachedSection {
            spec: self,
            value: std::marker::PhantomData,
        }
    }

    fn succeeded<T>(&self, value: Arc<T>, reusable_for: Duration, per_user: bool) -> Section<T> {
        self.agg.record(Outcome {
            name: self.name,
            failure: None,
            stale: false,
            reusable_for,
            per_user,
        });
        Section {
            name: self.name,
            criticality: self.criticality,
            value: Some(value),
            failure: None,
        }
    }

    /// The section's span (recorded only when spans are exported): its
    /// upstream calls are its children, and it says how the section ended.
    fn span(&self) -> tracing::Span {
        if !self.agg.traced {
            return tracing::Span::none();
        }
        tracing::debug_span!(
            "section",
            otel.name = %format_args!("section {}", self.name),
            otel.status_code = tracing::field::Empty,
            bff.section = self.name,
            bff.section.criticality = match self.criticality {
                Criticality::Critical => "critical",
                Criticality::Optional => "optional",
            },
            bff.section.outcome = tracing::field::Empty,
            bff.section.stale = tracing::field::Empty,
            bff.cache.result = tracing::field::Empty,
        )
    }

    /// Fetches the section within its deadline (and the request's), or
    /// serves it from the cache as [`cached`](Self::cached) says. The fetch
    /// owns what it needs: a cached one may finish in the background.
    pub async fn run<T, F>(self, fetch: F) -> Section<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Future<Output = Result<T, UpstreamError>> + Send + 'static,
    {
        let span = self.span();
        let fetch = fetch.instrument(span.clone());
        // Only the fetch runs in the span (it may finish in a task of its
        // own); the section's bookkeeping records on it directly, sparing an
        // enter and exit per poll.
        let section = self.run_in_span(fetch, &span).await;
        section.record_on(&span);
        section
    }

    async fn run_in_span<T, F>(self, fetch: F, span: &tracing::Span) -> Section<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Future<Output = Result<T, UpstreamError>> + Send + 'static,
    {
        let agg = self.agg;
        let cache = agg.store.cache();
        let cached = self.cache.as_ref().map(|(policy, key, _)| (*policy, key));
        let tags: &[String] = self.cache.as_ref().map_or(&[], |(_, _, tags)| tags);
        let per_user = cached.as_ref().is_none_or(|(policy, _)| policy.per_user);
        let remaining = agg.deadlines.request.saturating_sub(agg.started.elapsed());
        let budget = self.deadline.min(remaining);
        let deadline = Instant::now() + budget;
        let fetch = budget::scope(Budget::new(deadline, self.criticality), fetch);
        let failure = match &cached {
            Some((policy, key)) if !policy.fresh_for.is_zero() => {
                match tokio::time::timeout_at(deadline, cache.get_or_load(policy, key, tags, fetch))
                    .await
                {
                    Ok(Ok(hit)) => {
                        let result = if hit.tier == Tier::Loaded {
                            "miss"
                        } else {
                            "hit"
                        };
                        metrics::counter!(names::CACHE_LOOKUPS, "section" => self.name, "result" => result)
                            .increment(1);
                        span.record("bff.cache.result", result);
                        let reusable_for = match hit.freshness {
                            Freshness::Fresh => policy.fresh_for.saturating_sub(hit.age),
                            _ => Duration::ZERO,
                        };
                        return self.succeeded(hit.value, reusable_for, policy.per_user);
                    }
                    Ok(Err(LoadError::Failed(error))) => {
                        tracing::info!(section = self.name, %error, "section failed");
                        error.failure
                    }
                    Ok(Err(LoadError::Lost | LoadError::Collision)) => Failure::Unavailable,
                    Err(_) => self.timed_out(budget),
                }
            }
            _ => match tokio::time::timeout_at(deadline, fetch).await {
                Ok(Ok(value)) => {
                    let value = Arc::new(value);
                    if let Some((policy, key)) = &cached {
                        // Stand-ins are not rewritten while recent.
                        if !cache.holds_recent(key, STAND_IN_REFRESH).await {
                            cache.put(policy, key, tags, value.clone()).await;
                        }
                    }
                    return self.succeeded(value, Duration::ZERO, per_user);
                }
                Ok(Err(error)) => {
                    tracing::info!(section = self.name, %error, "section failed");
                    error.failure
                }
                Err(_) => self.timed_out(budget),
            },
        };
        metrics::counter!(names::SECTION_FAILURES, "section" => self.name, "reason" => failure.reason()).increment(1);
        // A resource the service says does not exist is not stood in for.
        let stale = match (&cached, failure) {
            (_, Failure::NotFound) | (None, _) => None,
            (Some((policy, key)), _) => {
                let hit = cache.get::<T>(policy, key).await;
                let result = if hit.is_some() { "stale" } else { "miss" };
                metrics::counter!(names::CACHE_LOOKUPS, "section" => self.name, "result" => result)
                    .increment(1);
                span.record("bff.cache.result", result);
                if hit.is_some() {
                    cache.served_stale(policy, StaleReason::UpstreamError);
                }
                hit.map(|c| c.value)
            }
        };
        agg.record(Outcome {
            name: self.name,
            failure: Some(failure),
            stale: stale.is_some(),
            reusable_for: Duration::ZERO,
            per_user,
        });
        Section {
            name: self.name,
            criticality: self.criticality,
            value: stale,
            failure: Some(failure),
        }
    }

    /// Fetches a section made of one fragment per id (a partner batch),
    /// each cached on its own as `fragment`'s of that id (with its tags):
    /// fresh ones are served, revalidating ones
    /// served and refreshed in one background batch, and only the rest
    /// fetched, in one call, within the deadline. When that call fails, the
    /// ids it was for are served from stale copies where there are some.
    /// Ids the service does not know are returned in [`Each::missing`].
    pub async fn run_each<K, T, F, Fut>(
        self,
        fragment: &Fragment<K, T>,
        ids: &[K],
        fetch: F,
    ) -> Section<Each<K, T>>
    where
        K: KeyPart + Copy + Eq + std::hash::Hash + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, T>, UpstreamError>> + Send + 'static,
    {
        let span = self.span();
        let traced = span.clone();
        let fetch = move |ids| fetch(ids).instrument(traced.clone());
        let section = self.run_each_in_span(*fragment, ids, fetch, &span).await;
        section.record_on(&span);
        section
    }

    async fn run_each_in_span<K, T, F, Fut>(
        self,
        fragment: Fragment<K, T>,
        ids: &[K],
        fetch: F,
        span: &tracing::Span,
    ) -> Section<Each<K, T>>
    where
        K: KeyPart + Copy + Eq + std::hash::Hash + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, T>, UpstreamError>> + Send + 'static,
    {
        let agg = self.agg;
        let cache = agg.store.cache().clone();
        let policy = agg.store.policy_of(&fragment);
        let key_of = move |id: &K| fragment.key(id);
        let tags_of = move |id: &K| fragment.tags(id);
        let remaining = agg.deadlines.request.saturating_sub(agg.started.elapsed());
        let budget = self.deadline.min(remaining);
        let deadline = Instant::now() + budget;

        let mut found = HashMap::with_capacity(ids.len());
        let mut reusable_for = policy.fresh_for;
        let (mut to_load, mut to_refresh) = (Vec::new(), Vec::new());
        if policy.fresh_for.is_zero() {
            to_load = ids.to_vec();
        } else {
            let keys: Vec<String> = ids.iter().map(&key_of).collect();
            let hits =
                futures::future::join_all(keys.iter().map(|key| cache.get::<T>(&policy, key)))
                    .await;
            for (id, hit) in ids.iter().zip(hits) {
                match hit {
                    Some(c) if c.freshness == Freshness::Fresh => {
                        reusable_for = reusable_for.min(policy.fresh_for.saturating_sub(c.age));
                        found.insert(*id, c.value);
                    }
                    Some(c) if c.freshness == Freshness::Revalidate => {
                        cache.served_stale(&policy, StaleReason::Revalidating);
                        reusable_for = Duration::ZERO;
                        found.insert(*id, c.value);
                        to_refresh.push(*id);
                    }
                    _ => to_load.push(*id),
                }
            }
            let hit = (ids.len() - to_load.len()) as u64;
            metrics::counter!(names::CACHE_LOOKUPS, "section" => self.name, "result" => "hit")
                .increment(hit);
            metrics::counter!(names::CACHE_LOOKUPS, "section" => self.name, "result" => "miss")
                .increment(to_load.len() as u64);
            let result = match (hit, to_load.len()) {
                (_, 0) => "hit",
                (0, _) => "miss",
                _ => "partial",
            };
            span.record("bff.cache.result", result);
        }
        if !to_refresh.is_empty() {
            let refresh = budget::scope(
                Budget::new(Instant::now() + self.deadline, Criticality::Optional),
                fetch(to_refresh),
            );
            let cache = cache.clone();
            tokio::spawn(async move {
                if let Ok(fetched) = refresh.await {
                    for (id, value) in fetched {
                        cache
                            .put(&policy, &key_of(&id), &tags_of(&id), Arc::new(value))
                            .await;
                    }
                }
            });
        }

        let mut missing = Vec::new();
        let mut failure = None;
        let mut stale = false;
        if !to_load.is_empty() {
            let call = budget::scope(
                Budget::new(deadline, self.criticality),
                fetch(to_load.clone()),
            );
            failure = match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(mut fetched)) => {
                    for id in &to_load {
                        match fetched.remove(id) {
                            Some(value) => {
                                let value = Arc::new(value);
                                let key = key_of(id);
                                // Stand-ins are not rewritten while recent.
                                if !policy.fresh_for.is_zero()
                                    || !cache.holds_recent(&key, STAND_IN_REFRESH).await
                                {
                                    cache.put(&policy, &key, &tags_of(id), value.clone()).await;
                                }
                                found.insert(*id, value);
                            }
                            None => missing.push(*id),
                        }
                    }
                    None
                }
                Ok(Err(error)) => {
                    tracing::info!(section = self.name, %error, "section failed");
                    Some(error.failure)
                }
                Err(_) => Some(self.timed_out(budget)),
            };
            if let Some(failure) = failure {
                metrics::counter!(names::SECTION_FAILURES, "section" => self.name, "reason" => failure.reason()).increment(1);
                if failure != Failure::NotFound {
                    for id in &to_load {
                        if let Some(copy) = cache.get::<T>(&policy, &key_of(id)).await {
                            cache.served_stale(&policy, StaleReason::UpstreamError);
                            found.insert(*id, copy.value);
                            stale = true;
                        }
                    }
                }
            }
        }
        agg.record(Outcome {
            name: self.name,
            failure,
            stale,
            reusable_for,
            per_user: policy.per_user,
        });
        let value =
            (failure.is_none() || !found.is_empty()).then(|| Arc::new(Each { found, missing }));
        Section {
            name: self.name,
            criticality: self.criticality,
            value,
            failure,
        }
    }

    fn timed_out(&self, budget: Duration) -> Failure {
        tracing::info!(
            section = self.name,
            budget_ms = budget.as_millis() as u64,
            "section timed out"
        );
        Failure::Timeout
    }
}

/// A section's result: the value (fresh or stale) or nothing. Values are
/// shared with the fragment cache, hence the `Arc`: handlers shape their
/// response from a borrow.
#[derive(Debug)]
pub struct Section<T> {
    name: &'static str,
    criticality: Criticality,
    value: Option<Arc<T>>,
    failure: Option<Failure>,
}

impl<T> Section<T> {
    fn record_on(&self, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        span.record(
            "bff.section.outcome",
            self.failure.map_or("ok", Failure::reason),
        );
        span.record(
            "bff.section.stale",
            self.failure.is_some() && self.value.is_some(),
        );
        if self.failure.is_some() && self.value.is_none() {
            span.record("otel.status_code", "error");
        }
    }

    /// The value, fresh or stale; `None` when the section failed without a
    /// stand-in.
    pub fn into_value(self) -> Option<Arc<T>> {
        self.value
    }

    /// The value, borrowed.
    pub fn value(&self) -> Option<&T> {
        self.value.as_deref()
    }

    /// Why the section failed, if it did (even when served stale).
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// The value of a section the response needs: 404 when its service said
    /// it does not exist, 503 with `Retry-After` when there is no data.
    pub fn required(self) -> Result<Arc<T>, ApiError> {
        match (self.value, self.failure) {
            (Some(value), _) => Ok(value),
            (None, Some(Failure::NotFound)) => {
                Err(ApiError::not_found(format!("{} not found", self.name)))
            }
            (None, _) => {
                if self.criticality == Criticality::Optional {
                    tracing::warn!(section = self.name, "an optional section was required");
                }
                Err(ApiError::unavailable(
                    format!(
                        "{} data is unavailable right now; try again shortly",
                        self.name
                    ),
                    RETRY_AFTER_SECS,
                ))
            }
        }
    }
}

/// The value of a [`run_each`](SectionSpec::run_each) section.
#[derive(Debug, Clone)]
pub struct Each<K, T> {
    /// What was found (fresh, or stale when the call failed), by id.
    pub found: HashMap<K, Arc<T>>,
    /// The ids the service said it does not know.
    pub missing: Vec<K>,
}

/// The `metadata` object of an aggregated response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// When the response was assembled (RFC 3339).
    pub timestamp: String,
    /// How many sections failed (served stale or missing).
    pub partial_failures: usize,
    /// The sections that failed.
    pub degraded: Vec<&'static str>,
    /// The failed sections served from a stale copy.
    pub stale: Vec<&'static str>,
    /// Why each failed section failed.
    pub reasons: BTreeMap<&'static str, &'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept only to stand in for failures.
    const USER: Fragment<u32, String> =
        Fragment::per_user("user", 1).stale_for(Duration::from_secs(60));
    /// Served fresh for a minute.
    const FRESH_USER: Fragment<u32, String> = Fragment::per_user("user", 1)
        .fresh_for(Duration::from_secs(60))
        .stale_for(Duration::from_secs(60))
        .approx_bytes(100);
    const PRODUCT: Fragment<u32, u32> = Fragment::shared("product", 1);
    const PRICE: Fragment<u32, u32> = Fragment::shared("price", 1);

    fn cache() -> FragmentStore {
        let cache = bff_cache::tiered::TieredCache::new(Default::default()).expect("cache");
        FragmentStore::new(cache)
    }

    fn deadlines(request: Duration) -> Deadlines {
        Deadlines {
            request,
            critical: Duration::from_millis(500),
            optional: Duration::from_secs(2),
        }
    }

    async fn fail<T>(failure: Failure) -> Result<T, UpstreamError> {
        Err(UpstreamError::new("test", failure, "injected"))
    }

    #[tokio::test(start_paused = true)]
    async fn sections_run_concurrently_within_their_deadlines() {
        let cache = cache();
        let agg = Aggregation::new(cache.clone(), deadlines(Duration::from_secs(3)), "/t");
        let started = tokio::time::Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<u32, UpstreamError>(1)
        };
        let fast = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<u32, UpstreamError>(2)
        };
        let (a, b) = tokio::join!(
            agg.optional("slow")
                .deadline(Duration::from_millis(800))
                .run(slow),
            agg.critical("fast").run(fast)
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(800),
            "bounded by the slow section's deadline"
        );
        assert_eq!((a.failure(), b.value()), (Some(Failure::Timeout), Some(&2)));
        let m = agg.metadata().expect("lenient");
        assert_eq!(
            (
                m.partial_failures,
                m.degraded.clone(),
                m.reasons.get("slow").copied()
            ),
            (1, vec!["slow"], Some("timeout"))
        );
        assert!(m.stale.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_deadline_caps_every_section() {
        let cache = cache();
        let agg = Aggregation::new(cache.clone(), deadlines(Duration::from_millis(300)), "/t");
        let started = tokio::time::Instant::now();
        let hang = std::future::pending::<Result<u32, UpstreamError>>();
        let s = agg.optional("x").run(hang).await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(s.failure(), Some(Failure::Timeout));
    }

    #[tokio::test]
    async fn a_failed_section_is_served_stale_and_reported() {
        let cache = cache();
        let first = Aggregation::new(cache.clone(), deadlines(Duration::from_secs(1)), "/t");
        let ok = first
            .critical("user")
            .cached(&USER, &1)
            .run(async { Ok::<_, UpstreamError>("ada".to_owned()) })
            .await;
        assert_eq!(*ok.required().expect("fresh"), "ada");
        assert_eq!(first.metadata().expect("complete").partial_failures, 0);

        let second = Aggregation::new(cache.clone(), deadlines(Duration::from_secs(1)), "/t");
        let stale = second
            .critical("user")
            .cached(&USER, &1)
            .run(fail::<String>(Failure::Unavailable))
            .await;
        assert_eq!(*stale.required().expect("stale"), "ada");
        let m = second.metadata().expect("lenient");
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["partialFailures"], 1);
        assert_eq!(json["degraded"], serde_json::json!(["user"]));
        assert_eq!(json["stale"], serde_json::json!(["user"]));
        assert_eq!(json["reasons"]["user"], "unavailable");
    }

    #[tokio::test]
    async fn the_status_decision() {
        let cache = cache();
        let agg = Aggregation::new(cache.clone(), deadlines(Duration::from_secs(1)), "/t");
        let missing = agg
            .critical("user")
            .cached(&USER, &404)
            .run(fail::<String>(Failure::NotFound))
            .await;
        assert_eq!(missing.required().expect_err("404").status().as_u16(), 404);
        let down = agg
            .critical("user")
            .run(fail::<String>(Failure::CircuitOpen))
            .await;
        let err = down.required().expect_err("503");
        assert_eq!((err.status().as_u16(), err.code()), (503, "unavailable"));
        let m = agg.metadata().expect("lenient");
        assert_eq!(m.reasons.get("user"), Some(&"circuit_open"));
    }

    #[tokio::test]
    async fn strict_turns_a_partial_answer_into_a_503_naming_the_sections() {
        let cache = cache();
        let agg =
            Aggregation::new(cache.clone(), deadlines(Duration::from_secs(1)), "/t").strict(true);
        let ok = agg
            .critical("user")
            .run(async { Ok::<_, UpstreamError>(1u8) })
            .await;
        assert!(ok.required().is_ok());
        assert!(agg.metadata().is_ok(), "nothing failed yet");
        let _ = agg
            .optional("orders")
            .run(fail::<u8>(Failure::Timeout))
            .await;
        let err = agg.metadata().expect_err("strict");
        assert_eq!(err.status().as_u16(), 503);
        assert!(
            err.detail().contains("orders (timeout)"),
            "{}",
            err.detail()
        );
    }

    #[tokio::test]
    async fn a_fresh_fragment_is_served_without_calling_the_upstream() {
        // Declared fresh; the BFF's configuration does not override it.
        let store = cache();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fetch = || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, UpstreamError>("ada".to_owned())
            }
        };
        for _ in 0..3 {
            let agg = Aggregation::new(store.clone(), deadlines(Duration::from_secs(1)), "/t");
            let user = agg
                .critical("user")
                .cached(&FRESH_USER, &1)
                .run(fetch())
                .await;
            assert_eq!(*user.required().expect("served"), "ada");
            assert_eq!(agg.metadata().expect("whole").partial_failures, 0);
        }
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "then fresh hits"
        );
        let other = Aggregation::new(store, deadlines(Duration::from_secs(1)), "/t");
        let _ = other
            .critical("user")
            .cached(&FRESH_USER, &2)
            .run(fetch())
            .await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "another subject's key is its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_section_budget_reaches_the_calls_inside() {
        let cache = cache();
        let agg = Aggregation::new(cache.clone(), deadlines(Duration::from_secs(3)), "/t");
        let started = Instant::now();
        let seen = agg
            .optional("s")
            .deadline(Duration::from_millis(700))
            .run(async move {
                Ok::<_, UpstreamError>(budget::current().map(|b| {
                    (
                        (b.deadline - started).as_millis() as u64,
                        b.criticality == Criticality::Optional,
                    )
                }))
            })
            .await
            .into_value()
            .and_then(|b| *b)
            .expect("a budget inside the section");
        assert_eq!(seen, (700, true));
    }

    /// Product and price as the BFF's configuration says (fresh for a
    /// minute, per user or not), whatever they are declared with.
    fn fresh_store(per_user: bool) -> FragmentStore {
        let policy = |declared: FragmentPolicy| FragmentPolicy {
            fresh_for: Duration::from_secs(60),
            stale_for: Duration::from_secs(60),
            per_user,
            ..declared
        };
        let cache = bff_cache::tiered::TieredCache::new(bff_cache::tiered::TieredConfig {
            fragments: vec![policy(PRODUCT.policy()), policy(PRICE.policy())],
            ..Default::default()
        })
        .expect("cache");
        FragmentStore::new(cache)
    }

    #[tokio::test]
    async fn reuse_follows_what_the_sections_served() {
        let store = fresh_store(false);
        let agg = Aggregation::new(store.clone(), deadlines(Duration::from_secs(1)), "/t");
        let handle = agg.reuse_handle();
        assert_eq!(handle.reuse(), None, "nothing ran yet");
        let _ = agg
            .critical("product")
            .cached(&PRODUCT, &1)
            .run(async { Ok::<_, UpstreamError>(1u32) })
            .await;
        match handle.reuse() {
            Some(Reuse::For {
                private: false,
                max_age,
            }) => {
                assert!(max_age > Duration::from_secs(58) && max_age <= Duration::from_secs(60));
            }
            other => panic!("shared and fresh: {other:?}"),
        }
        let _ = agg
            .optional("reviews")
            .run(async { Ok::<_, UpstreamError>(2u32) })
            .await;
        assert_eq!(
            handle.reuse().map(Reuse::header_value).as_deref(),
            Some("private, no-cache"),
            "an uncached section may be anyone's and may not be reused"
        );
        drop(agg);

        let agg = Aggregation::new(fresh_store(true), deadlines(Duration::from_secs(1)), "/t");
        let _ = agg
            .critical("product")
            .cached(&PRODUCT, &1)
            .run(async { Ok::<_, UpstreamError>(1u32) })
            .await;
        assert!(
            agg.reuse_handle()
                .reuse()
                .map(Reuse::header_value)
                .is_some_and(|v| v.starts_with("private, max-age="))
        );
        let _ = agg
            .optional("price")
            .run(fail::<u32>(Failure::Timeout))
            .await;
        assert_eq!(
            agg.reuse_handle().reuse(),
            Some(Reuse::NoStore),
            "a partial answer"
        );
    }

    #[tokio::test]
    async fn each_id_of_a_batch_is_its_own_fragment() {
        let store = fresh_store(false);
        let asked = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let fetch = |ids: Vec<u32>| {
            asked.lock().expect("lock").push(ids.clone());
            async move {
                // 9 does not exist.
                Ok::<_, UpstreamError>(
                    ids.into_iter()
                        .filter(|&id| id != 9)
                        .map(|id| (id, id * 10))
                        .collect(),
                )
            }
        };
        let agg = Aggregation::new(store.clone(), deadlines(Duration::from_secs(1)), "/t");
        let first = agg
            .critical("p")
            .run_each(&PRODUCT, &[1, 2, 9], fetch)
            .await;
        let first = first.required().expect("found");
        assert_eq!(*first.found[&2], 20);
        assert_eq!(first.missing, vec![9]);

        let agg = Aggregation::new(store.clone(), deadlines(Duration::from_secs(1)), "/t");
        let second = agg
            .critical("p")
            .run_each(&PRODUCT, &[2, 3, 1], fetch)
            .await;
        let second = second.required().expect("found");
        assert_eq!(second.found.len(), 3);
        assert_eq!(
            *asked.lock().expect("lock"),
            vec![vec![1, 2, 9], vec![3]],
            "only the id no batch had loaded was fetched"
        );

        // The upstream fails: the cached id is served, the other is not,
        // and the section is reported degraded.
        let agg = Aggregation::new(store, deadlines(Duration::from_secs(1)), "/t");
        let failing = |_ids: Vec<u32>| fail::<HashMap<u32, u32>>(Failure::Unavailable);
        let third = agg.optional("p").run_each(&PRODUCT, &[1, 4], failing).await;
        assert_eq!(third.value().map(|e| e.found.len()), Some(1));
        let metadata = agg.metadata().expect("partial");
        assert_eq!(metadata.degraded, vec!["p"]);
        assert!(metadata.stale.is_empty(), "no stale copy was needed for 1");
    }
}
