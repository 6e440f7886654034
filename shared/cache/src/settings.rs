//! The cache's configuration, owned here: the in-process tier
//! (`BFF_CACHE_STALE_FOR`, `_MAX_BYTES`, `_LOCK_FOR`), the Redis calls
//! (`BFF_REDIS_TIMEOUT`), and each declared fragment kind's windows
//! (`BFF_CACHE_{KIND}_FRESH`, `_REVALIDATE`, `_STALE`, defaulting to the
//! policy the BFF declares).

use std::time::Duration;

use bff_config::{ConfigError, Section, Sources, de};

use crate::policy::FragmentPolicy;

/// The cache, configured.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The least time the in-process tier keeps any fragment; each kind
    /// keeps its own windows.
    pub stale_for: Duration,
    /// Bytes the in-process tier may hold.
    pub max_bytes: u64,
    /// How long a replica loading a fragment holds its Redis lock (the
    /// others wait for its copy up to this long).
    pub lock_for: Duration,
    /// Longest any Redis call may take.
    pub redis_timeout: Duration,
    /// The policy of each declared kind, with its configured windows.
    pub fragments: Vec<FragmentPolicy>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CacheSection {
    #[serde(deserialize_with = "de::duration")]
    stale_for: Duration,
    #[serde(deserialize_with = "de::positive")]
    max_bytes: u64,
    #[serde(deserialize_with = "de::duration")]
    lock_for: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            stale_for: Duration::from_secs(600),
            max_bytes: 64 * 1024 * 1024,
            lock_for: Duration::from_millis(200),
        }
    }
}

impl Section for CacheSection {}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RedisSection {
    #[serde(deserialize_with = "de::duration")]
    timeout: Duration,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            timeout: Duration::from_millis(50),
        }
    }
}

impl Section for RedisSection {}

/// A kind's windows; `None` keeps the BFF's declared one.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct WindowsSection {
    #[serde(deserialize_with = "de::some_duration_or_zero")]
    fresh: Option<Duration>,
    #[serde(deserialize_with = "de::some_duration_or_zero")]
    revalidate: Option<Duration>,
    #[serde(deserialize_with = "de::some_duration_or_zero")]
    stale: Option<Duration>,
}

impl Section for WindowsSection {}

/// The windows a kind's policy may be given (`BFF_CACHE_{KIND}_…`).
const WINDOWS: [&str; 3] = ["FRESH", "REVALIDATE", "STALE"];

impl CacheConfig {
    /// Reads the cache of the BFF `bff`, which caches the kinds `declared`.
    /// A window set for a kind it does not declare is an error naming the
    /// key (a typo must not leave a fragment uncached or cached for ever),
    /// and so is a kind declared twice.
    pub fn configure(
        s: &mut Sources,
        bff: &str,
        declared: &[FragmentPolicy],
    ) -> Result<Self, ConfigError> {
        let kinds: Vec<&str> = declared.iter().map(|p| p.kind).collect();
        for (i, kind) in kinds.iter().enumerate() {
            if kinds[..i].contains(kind) {
                return Err(ConfigError::new(
                    format!("BFF_CACHE_{}", kind.to_uppercase()),
                    format!("the fragment kind {kind:?} is declared twice by {bff}"),
                ));
            }
        }
        let unknown = s
            .keys()
            .filter_map(|key| {
                let rest = key.strip_prefix("BFF_CACHE_")?;
                let kind = WINDOWS
                    .iter()
                    .find_map(|w| rest.strip_suffix(w)?.strip_suffix('_'))?
                    .to_lowercase();
                (!kinds.contains(&kind.as_str())).then(|| (key.to_owned(), kind))
            })
            .min();
        if let Some((key, kind)) = unknown {
            let known = if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.join(", ")
            };
            return Err(ConfigError::new(
                key,
                format!("{bff} caches no fragment kind {kind:?} (its kinds: {known})"),
            ));
        }
        let mut fragments = Vec::with_capacity(declared.len());
        for policy in declared {
            let windows: WindowsSection =
                s.section(&format!("CACHE_{}", policy.kind.to_uppercase()))?;
            fragments.push(FragmentPolicy {
                fresh_for: windows.fresh.unwrap_or(policy.fresh_for),
                revalidate_for: windows.revalidate.unwrap_or(policy.revalidate_for),
                stale_for: windows.stale.unwrap_or(policy.stale_for),
                ..*policy
            });
        }
        let cache: CacheSection = s.section("CACHE")?;
        let redis: RedisSection = s.section("REDIS")?;
        Ok(CacheConfig {
            stale_for: cache.stale_for,
            max_bytes: cache.max_bytes,
            lock_for: cache.lock_for,
            redis_timeout: redis.timeout,
            fragments,
        })
    }
}
