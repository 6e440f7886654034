//! Feature flags for gradual migrations, through OpenFeature.
//!
//! A BFF declares the flags it reads as typed values in its own crate
//! ([`Flag`]: a key, its variants in the order a migration goes, and the
//! split it ships with), and asks [`Flags::variant`] which variant a
//! subject gets. The answer comes from the OpenFeature SDK's client over
//! this crate's [`Provider`], with a [`TelemetryHook`] that counts each
//! evaluation by flag and variant and records it in the request's span, so
//! another OpenFeature provider (a vendor's) could replace this one without
//! touching a handler.
//!
//! **Sticky per subject.** A subject (a user id, a partner's client id)
//! falls in one of 10,000 buckets by a hash of the flag's key and the
//! subject ([`split::bucket`]), and each variant owns a range of buckets. No
//! state is kept: every replica, after every restart, puts a subject in
//! the same variant, and growing a variant's share only moves subjects into
//! it.
//!
//! **Where splits come from**, a later source winning flag by flag: the
//! BFF's declaration; `BFF_FLAGS_FILE` (a JSON object of splits by key,
//! read again when it changes, such as a mounted ConfigMap);
//! `BFF_FLAG_{KEY}`; and, with `REDIS_URL`, the BFF's hash in Redis
//! (`{bff}:flags:v1`, field = flag key, value = split), read every
//! `BFF_FLAGS_REFRESH` (1 s), so a change made there applies on every
//! replica within about a second, without a restart. A split is `v2` (every
//! subject) or `v1:80,v2:20` (weights). When Redis cannot be read, the
//! values last read stay in force and nothing fails; a value that does not
//! parse is refused (counted, logged once) and the previous one stays. A
//! field deleted from the hash gives the flag back to the other sources.

#![warn(missing_docs)]

mod provider;
mod settings;
pub mod split;
mod store;

use std::sync::Arc;
use std::time::Duration;

use open_feature::{Client, EvaluationContext, OpenFeature};
use tokio::sync::OnceCell;

pub use provider::{PROVIDER, Provider, TelemetryHook};
pub use settings::{FlagsConfig, env_key};
pub use split::Split;
pub use store::Source;

use store::{Refresher, Store};

/// A flag a BFF reads, declared in its crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The key (`unversioned-version`): lowercase letters, digits and `-`;
    /// `BFF_FLAG_UNVERSIONED_VERSION` in the environment.
    pub key: &'static str,
    /// What it decides, for the admin listing.
    pub description: &'static str,
    /// Its variants, in the order a migration goes (subjects are laid out
    /// over the buckets in this order); the first is the fallback.
    pub variants: &'static [&'static str],
    /// The split it ships with (`v2`, or `v1:80,v2:20`).
    pub default: &'static str,
}

/// Where the shared splits are: Redis, under the BFF's namespace.
#[derive(Debug, Clone)]
pub struct SharedStore {
    /// `REDIS_URL`.
    pub url: String,
    /// Longest a read may take.
    pub timeout: Duration,
    /// The BFF's name: the hash is `{namespace}:flags:v1`.
    pub namespace: String,
}

/// Why the flags could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct FlagsError(#[from] redis::RedisError);

/// A flag as the admin listing shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlagView {
    /// The key.
    pub key: &'static str,
    /// What it decides.
    pub description: &'static str,
    /// The split in force: each variant's share in percent.
    pub split: Vec<VariantShare>,
    /// Where the split comes from.
    pub source: Source,
}

/// One variant's share of subjects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantShare {
    /// The variant.
    pub variant: &'static str,
    /// Its share in percent.
    pub percent: f64,
}

/// The state of the shared store, for the admin listing.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedView {
    /// The Redis hash read.
    pub key: String,
    /// Seconds since it was last read (none yet: `None`).
    pub last_read_secs_ago: Option<f64>,
    /// Why the last read failed, while it fails.
    pub error: Option<String>,
}

/// A BFF's flags: evaluation through OpenFeature, and the refresh of
/// their splits. Cheap to clone.
#[derive(Clone)]
pub struct Flags {
    inner: Arc<Inner>,
}

struct Inner {
    bff: &'static str,
    hook: TelemetryHook,
    store: Arc<Store>,
    client: OnceCell<Client>,
    refresher: tokio::sync::Mutex<Refresher>,
    shared_key: Option<String>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("bff", &self.inner.bff)
            .field("flags", &self.inner.store.flags.len())
            .field("shared", &self.inner.shared_key)
            .finish()
    }
}

impl Flags {
    /// The flags of `bff` as `config` says, refreshed from the file and
    /// `shared` every `config.refresh` (the first read right away) when
    /// there is either. Must run inside a Tokio runtime.
    pub fn start(
        bff: &'static str,
        config: &FlagsConfig,
        shared: Option<&SharedStore>,
    ) -> Result<Self, FlagsError> {
        let store = Arc::new(Store::new(config));
        let shared = match shared {
            Some(s) => {
                let (_, conn) = bff_redis::connect(&s.url, s.timeout)?;
                Some(store::Shared {
                    conn,
                    key: format!("{}:flags:v1", s.namespace),
                    timeout: s.timeout,
                })
            }
            None => None,
        };
        let shared_key = shared.as_ref().map(|s| s.key.clone());
        let refreshes = shared.is_some() || config.file.is_some();
        let file_stamp = config
            .file
            .as_ref()
            .map(|path| (path.clone(), store::stamp(path)));
        let flags = Flags {
            inner: Arc::new(Inner {
                bff,
                hook: TelemetryHook::new(bff, config.flags),
                store: store.clone(),
                client: OnceCell::new(),
                refresher: tokio::sync::Mutex::new(Refresher {
                    store,
                    file: file_stamp,
                    shared,
                    refused: Default::default(),
                }),
                shared_key,
            }),
        };
        if refreshes && !config.flags.is_empty() {
            flags.keep_refreshing(config.refresh);
        }
        Ok(flags)
    }

    fn keep_refreshing(&self, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.refresher.lock().await.refresh().await;
            }
        });
    }

    /// Reads the file (when it changed) and Redis now, as the background
    /// refresh does.
    pub async fn refresh(&self) {
        self.inner.refresher.lock().await.refresh().await;
    }

    async fn client(&self) -> &Client {
        self.inner
            .client
            .get_or_init(|| async {
                // An API instance of its own rather than the process-wide
                // singleton: several BFFs (and tests) share a process.
                let mut api = OpenFeature::default();
                api.set_provider(Provider::new(self.inner.store.clone()))
                    .await;
                api.add_hook(self.inner.hook.clone()).await;
                api.create_client()
            })
            .await
    }

    /// The variant of `flag` for `subject` (sticky: the same on every
    /// replica). Never fails: a flag this BFF did not declare gets its first
    /// variant (and the failure is logged and counted as `default`).
    pub async fn variant(&self, flag: &Flag, subject: &str) -> &'static str {
        let fallback = flag.variants.first().copied().unwrap_or_default();
        let context = EvaluationContext::default().with_targeting_key(subject);
        match self
            .client()
            .await
            .get_string_value(flag.key, Some(&context), None)
            .await
        {
            Ok(value) => flag
                .variants
                .iter()
                .find(|v| **v == value)
                .copied()
                .unwrap_or(fallback),
            Err(_) => fallback,
        }
    }

    /// Every flag with its split in force and where it comes from.
    pub fn list(&self) -> Vec<FlagView> {
        self.inner
            .store
            .current()
            .into_iter()
            .map(|(flag, split, source)| FlagView {
                key: flag.key,
                description: flag.description,
                split: split
                    .shares(flag)
                    .into_iter()
                    .map(|(variant, percent)| VariantShare { variant, percent })
                    .collect(),
                source,
            })
            .collect()
    }

    /// The shared store's state; `None` without Redis.
    pub fn shared(&self) -> Option<SharedView> {
        let key = self.inner.shared_key.clone()?;
        let status = self.inner.store.status.lock().clone();
        Some(SharedView {
            key,
            last_read_secs_ago: status
                .last_ok
                .and_then(|t| t.elapsed().ok())
                .map(|d| d.as_secs_f64()),
            error: status.last_error,
        })
    }
}
