//! The cache's metric series registered at zero for each declared kind.

use super::*;

/// The Redis operations, whose error series exist from the start.
pub(super) const SHARED_OPS: [&str; 8] = [
    "get",
    "set",
    "lock",
    "unlock",
    "del",
    "del_tag",
    "publish",
    "subscribe",
];

/// Registers the series of `kind` at zero, so dashboards and alerts see 0
/// rather than no data before its first lookup.
pub(super) fn zero_series(kind: &'static str) {
    for (result, tier) in [
        ("hit", "local"),
        ("hit", "shared"),
        ("stale", "local"),
        ("stale", "shared"),
        ("miss", "none"),
    ] {
        metrics::counter!(names::CACHE_FRAGMENTS, "kind" => kind, "result" => result, "tier" => tier)
            .increment(0);
    }
    for reason in [StaleReason::Revalidating, StaleReason::UpstreamError] {
        metrics::counter!(names::CACHE_STALE_SERVED, "kind" => kind, "reason" => reason.label())
            .increment(0);
    }
    for trigger in ["miss", "refresh"] {
        for source in ["upstream", "replica"] {
            metrics::counter!(names::CACHE_LOADS, "kind" => kind, "trigger" => trigger, "source" => source)
                .increment(0);
        }
    }
    for cause in ["size", "expired"] {
        metrics::counter!(names::CACHE_EVICTIONS, "kind" => kind, "cause" => cause).increment(0);
    }
    metrics::counter!(names::CACHE_UNDECODABLE, "kind" => kind).increment(0);
}
