//! The fragment cache of the BFFs: the data of each section (a user's
//! profile, a product, a price) kept in two tiers — this process and, with
//! `REDIS_URL`, Redis shared by every replica — so that a fresh copy can
//! answer without an upstream call, a stale one can stand in when the
//! upstream fails, and a change published by a service evicts exactly the
//! fragments it concerns, everywhere. See [`tiered`].
//!
//! A BFF declares each kind of fragment it caches, typed, in its own crate
//! ([`fragment`]); the store applies the policy in force for it:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bff_cache::fragment::Fragment;
//! use bff_cache::tiered::{FragmentStore, Freshness, TieredCache, TieredConfig};
//!
//! const USER: Fragment<u64, Vec<u32>> = Fragment::per_user("user", 1)
//!     .fresh_for(Duration::from_secs(30))
//!     .stale_for(Duration::from_secs(600));
//!
//! let cache = TieredCache::new(TieredConfig {
//!     fragments: vec![USER.policy()],
//!     ..TieredConfig::default()
//! })
//! .expect("no Redis: cannot fail");
//! let store = FragmentStore::new(cache.clone());
//! let policy = store.policy_of(&USER);
//! cache.put(&policy, &USER.key(&42), &[], Arc::new(vec![1u32, 2, 3])).await;
//! let hit = cache.get::<Vec<u32>>(&policy, &USER.key(&42)).await.expect("cached");
//! assert_eq!((hit.value.as_slice(), hit.freshness), (&[1, 2, 3][..], Freshness::Fresh));
//! assert!(cache.get::<Vec<u32>>(&policy, &USER.key(&7)).await.is_none(), "keys carry the subject");
//! # });
//! ```

#![warn(missing_docs)]

pub mod fragment;
mod policy;
mod settings;
pub mod tiered;

pub use settings::CacheConfig;
