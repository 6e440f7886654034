//! The fragment cache: the last good copy of each upstream fragment (a
//! user's profile, a product), kept so that a failing upstream can be
//! answered for with a stale copy instead of nothing.
//!
//! The in-process tier holds typed values behind an `Arc`: storing a fresh
//! fragment on every successful call must cost next to nothing on the hot
//! path (no serialisation, one reference-count increment), and reading a
//! stale one back is a downcast. Keys of per-user data must include the
//! subject; the caller builds keys, this crate never guesses them.
//!
//! ```
//! # tokio_test_block(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! let cache = bff_cache::FragmentCache::new(1_000, Duration::from_secs(600));
//! cache.put("user:42", Arc::new(vec![1u32, 2, 3])).await;
//! let (value, _age) = cache.get::<Vec<u32>>("user:42").await.expect("cached");
//! assert_eq!(*value, [1, 2, 3]);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().expect("rt").block_on(f)
//! # }
//! ```

#![warn(missing_docs)]

pub mod tiered;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Fragment {
    value: Arc<dyn Any + Send + Sync>,
    stored_at: Instant,
}

/// The in-process tier: a bounded, concurrent map (moka) with a time to live.
#[derive(Clone)]
pub struct FragmentCache {
    inner: moka::future::Cache<String, Fragment>,
}

impl std::fmt::Debug for FragmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl FragmentCache {
    /// A cache of at most `max_entries` fragments, each kept `keep_for`
    /// after it was stored (how stale a stand-in may be).
    pub fn new(max_entries: u64, keep_for: Duration) -> Self {
        FragmentCache {
            inner: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(keep_for)
                .build(),
        }
    }

    /// Stores the latest good copy of `key`.
    pub async fn put<T: Send + Sync + 'static>(&self, key: &str, value: Arc<T>) {
        self.inner
            .insert(
                key.to_owned(),
                Fragment {
                    value,
                    stored_at: Instant::now(),
                },
            )
            .await;
    }

    /// The last good copy of `key` and its age, if still kept (and of type
    /// `T`; a fragment of another type under the key is a miss).
    pub async fn get<T: Send + Sync + 'static>(&self, key: &str) -> Option<(Arc<T>, Duration)> {
        let fragment = self.inner.get(key).await?;
        let age = fragment.stored_at.elapsed();
        fragment
            .value
            .downcast::<T>()
            .ok()
            .map(|value| (value, age))
    }

    /// Forgets `key` (an invalidation event).
    pub async fn invalidate(&self, key: &str) {
        self.inner.invalidate(key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_copy_and_drops_after_the_window() {
        let cache = FragmentCache::new(10, Duration::from_millis(200));
        cache.put("k", Arc::new("first".to_owned())).await;
        cache.put("k", Arc::new("second".to_owned())).await;
        let (v, age) = cache.get::<String>("k").await.expect("cached");
        assert_eq!(*v, "second");
        assert!(age < Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            cache.get::<String>("k").await.is_none(),
            "gone after the window"
        );
    }

    #[tokio::test]
    async fn a_fragment_of_another_type_is_a_miss() {
        let cache = FragmentCache::new(10, Duration::from_secs(60));
        cache.put("k", Arc::new("text".to_owned())).await;
        assert!(cache.get::<u32>("k").await.is_none());
        cache.put("j", Arc::new(1u32)).await;
        cache.invalidate("j").await;
        assert!(cache.get::<u32>("j").await.is_none());
    }
}
