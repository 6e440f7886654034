//! The fragment cache of the BFFs: the data of each section (a user's
//! profile, a product, a price) kept in two tiers — this process and, with
//! `REDIS_URL`, Redis shared by every replica — so that a fresh copy can
//! answer without an upstream call, a stale one can stand in when the
//! upstream fails, and a change published by a service evicts exactly the
//! fragments it concerns, everywhere. See [`tiered`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bff_cache::tiered::{FragmentPolicy, Freshness, TieredCache, TieredConfig};
//!
//! const USER: FragmentPolicy = FragmentPolicy {
//!     kind: "user",
//!     fresh_for: Duration::from_secs(30),
//!     revalidate_for: Duration::ZERO,
//!     stale_for: Duration::from_secs(600),
//!     approx_bytes: 4096,
//!     per_user: true,
//! };
//! let cache = TieredCache::new(TieredConfig::default()).expect("no Redis: cannot fail");
//! cache.put(&USER, "user:42", &[], Arc::new(vec![1u32, 2, 3])).await;
//! let hit = cache.get::<Vec<u32>>(&USER, "user:42").await.expect("cached");
//! assert_eq!((hit.value.as_slice(), hit.freshness), (&[1, 2, 3][..], Freshness::Fresh));
//! assert!(cache.get::<Vec<u32>>(&USER, "user:7").await.is_none(), "keys carry the subject");
//! # });
//! ```

#![warn(missing_docs)]

pub mod tiered;
