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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bff_cache::tiered::FragmentStore;
use bff_problem::ApiError;
use bff_telemetry::names;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

mod each;
mod reuse;
mod section;

pub use bff_upstream::Criticality;
pub use each::Each;
pub use reuse::{Reuse, ReuseHandle};
pub use section::{CachedSection, Section, SectionSpec};

use reuse::Outcome;

/// Seconds a client is told to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// A copy kept only to stand in for failures is not rewritten while this
/// process holds one younger than this (price changes still evict it).
pub const STAND_IN_REFRESH: Duration = Duration::from_secs(1);

/// How long sections may take: the configuration section
/// `BFF_DEADLINE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Deadlines {
    /// The whole request: every section ends within it.
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub request: Duration,
    /// A critical section.
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub critical: Duration,
    /// An optional section.
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub optional: Duration,
}

/// No section may be given longer than the request it belongs to.
impl bff_config::Section for Deadlines {
    fn check(&self) -> Result<(), bff_config::FieldError> {
        if self.critical > self.request || self.optional > self.request {
            return Err(bff_config::FieldError::new(
                "request",
                format!(
                    "must be at least the section deadlines ({:?}, {:?})",
                    self.critical, self.optional
                ),
            ));
        }
        Ok(())
    }
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
/// One client request's aggregation.
#[derive(Debug)]
pub struct Aggregation {
    pub(crate) store: FragmentStore,
    pub(crate) started: Instant,
    pub(crate) deadlines: Deadlines,
    route: Arc<str>,
    strict: bool,
    /// Whether this request's trace is sampled: sections of a trace that is
    /// not recorded get no span at all.
    pub(crate) traced: bool,
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
        SectionSpec::new(self, name, Criticality::Critical, self.deadlines.critical)
    }

    /// A section the response can do without (the optional deadline).
    pub fn optional(&self, name: &'static str) -> SectionSpec<'_> {
        SectionSpec::new(self, name, Criticality::Optional, self.deadlines.optional)
    }

    /// How the response may be reused, readable after the handler has
    /// consumed the aggregation (the edge sets `Cache-Control` from it).
    pub fn reuse_handle(&self) -> ReuseHandle {
        ReuseHandle(self.outcomes.clone())
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        self.outcomes.lock().push(outcome);
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
        let outcomes = self.outcomes.lock();
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
    use std::collections::HashMap;

    use bff_cache::fragment::Fragment;
    use bff_cache::tiered::FragmentPolicy;
    use bff_upstream::budget;
    use bff_upstream::{Failure, UpstreamError};

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
            asked.lock().push(ids.clone());
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
            *asked.lock(),
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
