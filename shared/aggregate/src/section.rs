//! A section: declared, run within its deadline, served from the cache as
//! its fragment's policy says, and its result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bff_cache::fragment::{Fragment, KeyPart};
use bff_cache::tiered::{FragmentPolicy, Freshness, LoadError, StaleReason, Tier};
use bff_problem::ApiError;
use bff_telemetry::names;
use bff_upstream::budget::{self, Budget};
use bff_upstream::{Criticality, Failure, UpstreamError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use crate::reuse::Outcome;
use crate::{Aggregation, RETRY_AFTER_SECS, STAND_IN_REFRESH};

/// A section being declared.
#[derive(Debug)]
#[must_use = "a section does nothing until run"]
pub struct SectionSpec<'a> {
    pub(crate) agg: &'a Aggregation,
    pub(crate) name: &'static str,
    pub(crate) criticality: Criticality,
    pub(crate) deadline: Duration,
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
    pub(crate) fn new(
        agg: &'a Aggregation,
        name: &'static str,
        criticality: Criticality,
        deadline: Duration,
    ) -> Self {
        SectionSpec {
            agg,
            name,
            criticality,
            deadline,
            cache: None,
        }
    }

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
    pub(crate) fn span(&self) -> tracing::Span {
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

    pub(crate) fn timed_out(&self, budget: Duration) -> Failure {
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
    pub(crate) name: &'static str,
    pub(crate) criticality: Criticality,
    pub(crate) value: Option<Arc<T>>,
    pub(crate) failure: Option<Failure>,
}

impl<T> Section<T> {
    pub(crate) fn record_on(&self, span: &tracing::Span) {
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
