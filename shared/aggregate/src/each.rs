//! A section made of one fragment per id (a partner batch).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bff_cache::fragment::{Fragment, KeyPart};
use bff_cache::tiered::{Freshness, StaleReason};
use bff_telemetry::names;
use bff_upstream::budget::{self, Budget};
use bff_upstream::{Criticality, Failure, UpstreamError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use crate::reuse::Outcome;
use crate::{STAND_IN_REFRESH, Section, SectionSpec};

impl SectionSpec<'_> {
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
}

/// The value of a [`run_each`](SectionSpec::run_each) section.
#[derive(Debug, Clone)]
pub struct Each<K, T> {
    /// What was found (fresh, or stale when the call failed), by id.
    pub found: HashMap<K, Arc<T>>,
    /// The ids the service said it does not know.
    pub missing: Vec<K>,
}
