//! Loads of cold keys: one per key in this process (single flight), and
//! with Redis one per key across the replicas (the lock), the others
//! waiting for its result.

use super::redis_tier::Lock;
use super::*;

/// What one load in flight resolves to, shared by every caller waiting for
/// it: the stored entry, or the error erased to its type (downcast by each
/// caller), or `None` when the load task was lost.
pub(super) type LoadOutcome = Result<Entry, Option<Arc<dyn Any + Send + Sync>>>;
pub(super) type InFlight =
    futures::future::Shared<futures::future::BoxFuture<'static, LoadOutcome>>;

/// A load running in this process.
pub(super) struct Running {
    pub(super) outcome: InFlight,
    /// Its fragment's tags.
    pub(super) tags: Arc<[String]>,
    /// Set when its key (or one of its tags) is invalidated while it runs:
    /// what it read may predate the change, so it is served to its waiters
    /// and not kept.
    pub(super) overtaken: Arc<std::sync::atomic::AtomicBool>,
}

impl TieredCache {
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
    pub(super) fn load_once<T, E, F>(
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
                self.0.inner.in_flight.lock().remove(&self.1);
            }
        }

        let mut in_flight = self.inner.in_flight.lock();
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

    pub(super) async fn load_and_store<T, E, F>(
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
}
