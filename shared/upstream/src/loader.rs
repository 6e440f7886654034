//! Batch loading (the DataLoader pattern): single-key loads issued within a
//! short window go out as one batch call.
//!
//! Why: a handler that needs "product X" should not have to know that
//! fifty other requests in the same millisecond need fifty other products;
//! the upstream has a batch RPC (`BatchGetProducts`, `pricings`) and one
//! call serves them all. The first load of a batch starts a timer; loads
//! arriving before it fires (or until `max_batch` keys) join the batch; each
//! gets its own key's value back, `None` for a key the upstream did not
//! return. A zero window sends the batch on the next turn of the scheduler
//! (the loads issued together, at no added latency); a longer window buys
//! bigger batches with latency. The batch call runs in its own task with the latest deadline and
//! the highest criticality among its waiters, so it is not cut short for a
//! waiter that gave up; each waiter still stops at its own deadline.
//!
//! ```
//! # use std::collections::HashMap;
//! # use std::time::Duration;
//! use bff_upstream::{BatchLoader, CallContext, UpstreamError};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let squares = BatchLoader::new("squares", Duration::from_millis(1), 100, |_ctx, keys: Vec<u32>| async move {
//!     Ok::<_, UpstreamError>(keys.into_iter().map(|k| (k, k * k)).collect::<HashMap<_, _>>())
//! });
//! let ctx = CallContext::detached();
//! let (a, b) = tokio::join!(squares.load(&ctx, 3), squares.load(&ctx, 4));
//! assert_eq!((a.unwrap(), b.unwrap()), (Some(9), Some(16)));
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bff_telemetry::names;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::budget::{self, Budget, Criticality};
use crate::context::CallContext;
use crate::error::UpstreamError;

type LoadFuture<K, V> =
    Pin<Box<dyn Future<Output = Result<HashMap<K, V>, UpstreamError>> + Send + 'static>>;
type LoadFn<K, V> = dyn Fn(CallContext, Vec<K>) -> LoadFuture<K, V> + Send + Sync;
type LoadResult<V> = Result<Option<V>, UpstreamError>;
type Waiter<V> = oneshot::Sender<LoadResult<V>>;

struct Pending<K, V> {
    ctx: CallContext,
    /// The span of the load that opened the batch.
    span: tracing::Span,
    waiters: HashMap<K, Vec<Waiter<V>>>,
    /// The latest deadline among the waiters; `None` once one has none.
    deadline: Option<Instant>,
    criticality: Criticality,
    generation: u64,
}

struct Inner<K, V> {
    name: &'static str,
    window: Duration,
    max_batch: usize,
    load: Box<LoadFn<K, V>>,
    pending: Mutex<(Option<Pending<K, V>>, u64)>,
}

/// See the module documentation. Cheap to clone.
pub struct BatchLoader<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for BatchLoader<K, V> {
    fn clone(&self) -> Self {
        BatchLoader {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for BatchLoader<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchLoader")
            .field("name", &self.inner.name)
            .field("window", &self.inner.window)
            .field("max_batch", &self.inner.max_batch)
            .finish()
    }
}

impl<K, V> BatchLoader<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A loader named `name` (metrics) that waits `window` after a batch's
    /// first key and sends at most `max_batch` keys per call to `load`.
    pub fn new<F, Fut>(name: &'static str, window: Duration, max_batch: usize, load: F) -> Self
    where
        F: Fn(CallContext, Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, UpstreamError>> + Send + 'static,
    {
        BatchLoader {
            inner: Arc::new(Inner {
                name,
                window,
                max_batch: max_batch.max(1),
                load: Box::new(move |ctx, keys| Box::pin(load(ctx, keys))),
                pending: Mutex::new((None, 0)),
            }),
        }
    }

    /// The value of `key`, batched with the loads around it; `None` when
    /// the upstream does not have it.
    pub async fn load(&self, ctx: &CallContext, key: K) -> Result<Option<V>, UpstreamError> {
        let rx = self.enqueue(ctx, key);
        self.receive(rx).await
    }

    /// The values of `keys`; keys the upstream does not have are absent
    /// from the map. The keys join the pending batch and it is sent at
    /// once: a caller that already has many keys does not wait for the
    /// window (and a request's keys always travel in one call, up to
    /// `max_batch`).
    pub async fn load_many(
        &self,
        ctx: &CallContext,
        keys: &[K],
    ) -> Result<HashMap<K, V>, UpstreamError> {
        let waiting: Vec<_> = keys
            .iter()
            .map(|k| (k.clone(), self.enqueue(ctx, k.clone())))
            .collect();
        self.flush(None);
        let mut found = HashMap::with_capacity(keys.len());
        for (key, rx) in waiting {
            if let Some(value) = self.receive(rx).await? {
                found.insert(key, value);
            }
        }
        Ok(found)
    }

    async fn receive(&self, rx: oneshot::Receiver<LoadResult<V>>) -> LoadResult<V> {
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::new(
                self.inner.name,
                crate::Failure::Unavailable,
                "the batch was dropped",
            )),
        }
    }

    /// Adds `key` to the pending batch (starting one, and its timer, if
    /// there is none); sends the batch when it is full.
    fn enqueue(&self, ctx: &CallContext, key: K) -> oneshot::Receiver<LoadResult<V>> {
        let (tx, rx) = oneshot::channel();
        let section = budget::current();
        let full = {
            let mut guard = self.inner.pending.lock();
            let (pending, generation) = &mut *guard;
            let batch = match pending {
                Some(batch) => {
                    batch.deadline = match (batch.deadline, section) {
                        (Some(a), Some(b)) => Some(a.max(b.deadline)),
                        _ => None,
                    };
                    if let Some(s) = section {
                        batch.criticality = batch.criticality.max(s.criticality);
                    }
                    batch
                }
                None => {
                    *generation += 1;
                    let this = self.clone();
                    let due = *generation;
                    tokio::spawn(async move {
                        if this.inner.window.is_zero() {
                            // The loads of this turn of the scheduler.
                            tokio::task::yield_now().await;
                        } else {
                            tokio::time::sleep(this.inner.window).await;
                        }
                        this.flush(Some(due));
                    });
                    pending.insert(Pending {
                        ctx: ctx.clone(),
                        span: tracing::Span::current(),
                        waiters: HashMap::new(),
                        deadline: section.map(|s| s.deadline),
                        criticality: section.map_or(Criticality::Optional, |s| s.criticality),
                        generation: due,
                    })
                }
            };
            batch.waiters.entry(key).or_default().push(tx);
            batch.waiters.len() >= self.inner.max_batch
        };
        if full {
            self.flush(None);
        }
        rx
    }

    /// Sends the pending batch (only the one of `generation` when given: a
    /// timer must not send a later batch early).
    fn flush(&self, generation: Option<u64>) {
        let batch = {
            let mut guard = self.inner.pending.lock();
            match &guard.0 {
                Some(b) if generation.is_none_or(|g| g == b.generation) => guard.0.take(),
                _ => None,
            }
        };
        let Some(batch) = batch else { return };
        let this = self.clone();
        // The batch call is part of the trace of the request that opened it.
        let span = batch.span.clone();
        let call = async move {
            let keys: Vec<K> = batch.waiters.keys().cloned().collect();
            metrics::histogram!(names::BATCH_SIZE, "loader" => this.inner.name)
                .record(keys.len() as f64);
            let call = (this.inner.load)(batch.ctx, keys);
            let result = match batch.deadline {
                Some(deadline) => {
                    budget::scope(Budget::new(deadline, batch.criticality), call).await
                }
                None => call.await,
            };
            match result {
                Ok(mut values) => {
                    for (key, waiters) in batch.waiters {
                        let value = values.remove(&key);
                        for waiter in waiters {
                            let _ = waiter.send(Ok(value.clone()));
                        }
                    }
                }
                Err(error) => {
                    for waiter in batch.waiters.into_values().flatten() {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
            }
        };
        tokio::spawn(call.instrument(span));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_loads_make_one_batch_call() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let loader = BatchLoader::new(
            "t",
            Duration::from_millis(2),
            100,
            move |_, keys: Vec<u32>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(keys
                        .into_iter()
                        .filter(|k| !k.is_multiple_of(7))
                        .map(|k| (k, k + 1))
                        .collect())
                }
            },
        );
        let ctx = CallContext::detached();
        let loads = (0..50u32).map(|k| {
            let loader = loader.clone();
            let ctx = ctx.clone();
            async move { loader.load(&ctx, k).await }
        });
        let results = futures::future::join_all(loads).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for (k, r) in results.into_iter().enumerate() {
            let k = k as u32;
            let expected = (!k.is_multiple_of(7)).then_some(k + 1);
            assert_eq!(r.expect("loaded"), expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_and_errors_reach_every_waiter() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let loader = BatchLoader::new(
            "t",
            Duration::from_secs(60),
            3,
            move |_, _keys: Vec<u32>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<HashMap<u32, u32>, _>(UpstreamError::new(
                        "t",
                        crate::Failure::Unavailable,
                        "down",
                    ))
                }
            },
        );
        let ctx = CallContext::detached();
        let started = Instant::now();
        let r = loader.load_many(&ctx, &[1, 2, 3]).await;
        assert_eq!(r.expect_err("failed").failure, crate::Failure::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no wait for the window"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
