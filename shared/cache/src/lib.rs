//! The fragment cache: the last good copy of each upstream fragment (a
//! user's profile, a product), kept so that a failing upstream can be
//! answered for with a stale copy instead of nothing.
//!
//! Fragments are stored serialised (`Bytes`), not as typed values, so that
//! the same entries can live in a shared second tier (Redis) and be read by
//! any replica. Keys of per-user data must include the subject; the caller
//! builds keys, this crate never guesses them.
//!
//! ```
//! # tokio_test_block(async {
//! use std::time::Duration;
//! let cache = bff_cache::FragmentCache::new(1_000, Duration::from_secs(600));
//! cache.put("user:42", &vec![1, 2, 3]).await;
//! let (value, _age): (Vec<u32>, _) = cache.get("user:42").await.expect("cached");
//! assert_eq!(value, [1, 2, 3]);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().expect("rt").block_on(f)
//! # }
//! ```

#![warn(missing_docs)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
struct Fragment {
    bytes: Bytes,
    stored_at: Instant,
}

/// The in-process tier: a bounded, concurrent map (moka) with a time to live.
#[derive(Debug, Clone)]
pub struct FragmentCache {
    inner: moka::future::Cache<String, Fragment>,
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
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.inner
                    .insert(
                        key.to_owned(),
                        Fragment {
                            bytes: Bytes::from(bytes),
                            stored_at: Instant::now(),
                        },
                    )
                    .await;
            }
            Err(error) => tracing::warn!(key, %error, "fragment not cached: it does not serialise"),
        }
    }

    /// The last good copy of `key` and its age, if still kept.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<(T, Duration)> {
        let fragment = self.inner.get(key).await?;
        match serde_json::from_slice(&fragment.bytes) {
            Ok(value) => Some((value, fragment.stored_at.elapsed())),
            Err(error) => {
                // A fragment of an older shape: useless, drop it.
                tracing::warn!(key, %error, "cached fragment does not decode; dropped");
                self.inner.invalidate(key).await;
                None
            }
        }
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
        cache.put("k", &"first").await;
        cache.put("k", &"second").await;
        let (v, age): (String, _) = cache.get("k").await.expect("cached");
        assert_eq!(v, "second");
        assert!(age < Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            cache.get::<String>("k").await.is_none(),
            "gone after the window"
        );
    }

    #[tokio::test]
    async fn a_fragment_of_another_shape_is_a_miss() {
        let cache = FragmentCache::new(10, Duration::from_secs(60));
        cache.put("k", &"text").await;
        assert!(cache.get::<u32>("k").await.is_none());
        assert!(
            cache.get::<String>("k").await.is_none(),
            "and it was dropped"
        );
        cache.put("j", &1).await;
        cache.invalidate("j").await;
        assert!(cache.get::<u32>("j").await.is_none());
    }
}
