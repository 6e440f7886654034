//! The upstreams' configuration, owned here: `BFF_UPSTREAM_{NAME}` is where
//! a declared upstream is, and its call policy is read from the keys under
//! `BFF_UPSTREAM_ALL_` (every upstream) overridden by those under
//! `BFF_UPSTREAM_{NAME}_`, key by key. `BFF_CONNECT_TIMEOUT` bounds every
//! connection the pool and the gRPC channels open.

use std::time::Duration;

use bff_config::{ConfigError, FieldError, Section, Sources, de};

use crate::circuit::BreakerConfig;
use crate::layers::retry::RetryConfig;
use crate::registry::{UpstreamDecl, UpstreamSettings};
use crate::stack::UpstreamPolicy;

/// Every declared upstream, configured.
#[derive(Debug, Clone)]
pub struct UpstreamsConfig {
    /// Each declared upstream with its URL and call policy, in the order
    /// of the declarations.
    pub upstreams: Vec<UpstreamSettings>,
    /// Connect timeout of the shared HTTP pool and the gRPC channels.
    pub connect_timeout: Duration,
}

/// The policy keys of one block (`BFF_UPSTREAM_ALL_…`,
/// `BFF_UPSTREAM_USER_…`), flat as the keys are.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PolicySection {
    #[serde(deserialize_with = "de::duration")]
    timeout: Duration,
    #[serde(deserialize_with = "de::duration")]
    min_budget: Duration,
    #[serde(deserialize_with = "de::positive")]
    max_concurrency: usize,
    #[serde(deserialize_with = "de::flag")]
    adaptive_concurrency: bool,
    #[serde(deserialize_with = "de::percent::<0, _>")]
    critical_reserve: u8,
    #[serde(deserialize_with = "de::positive")]
    breaker_window: u32,
    #[serde(deserialize_with = "de::positive")]
    breaker_min_calls: u32,
    #[serde(deserialize_with = "de::percent::<1, _>")]
    failure_rate: u8,
    #[serde(deserialize_with = "de::duration")]
    slow_call: Duration,
    #[serde(deserialize_with = "de::percent::<1, _>")]
    slow_rate: u8,
    #[serde(deserialize_with = "de::duration")]
    open_for: Duration,
    #[serde(deserialize_with = "de::positive")]
    half_open_calls: u32,
    #[serde(deserialize_with = "de::whole::<10, _, _>")]
    retries: u32,
    #[serde(deserialize_with = "de::duration")]
    retry_backoff: Duration,
    /// Retries as a percentage of calls.
    #[serde(deserialize_with = "de::percent::<0, _>")]
    retry_budget: u8,
    #[serde(deserialize_with = "de::whole::<1_000_000, _, _>")]
    retry_min_per_sec: u32,
    #[serde(deserialize_with = "de::flag")]
    coalesce: bool,
    /// 0: no hedging.
    #[serde(deserialize_with = "de::whole::<99, _, _>")]
    hedge_percentile: u8,
}

impl Default for PolicySection {
    fn default() -> Self {
        let p = UpstreamPolicy::default();
        PolicySection {
            timeout: p.timeout,
            min_budget: p.min_budget,
            max_concurrency: p.max_concurrency,
            adaptive_concurrency: p.adaptive_concurrency,
            critical_reserve: p.critical_reserve,
            breaker_window: p.breaker.window,
            breaker_min_calls: p.breaker.minimum_calls,
            failure_rate: p.breaker.failure_rate,
            slow_call: p.breaker.slow_call,
            slow_rate: p.breaker.slow_rate,
            open_for: p.breaker.open_for,
            half_open_calls: p.breaker.half_open_calls,
            retries: p.retry.max_retries,
            retry_backoff: p.retry.backoff,
            retry_budget: (p.retry.budget_ratio * 100.0).round() as u8,
            retry_min_per_sec: p.retry.min_per_sec,
            coalesce: p.coalesce,
            hedge_percentile: p.hedge_percentile.unwrap_or(0),
        }
    }
}

impl Section for PolicySection {
    fn check(&self) -> Result<(), FieldError> {
        if self.breaker_min_calls > self.breaker_window {
            return Err(FieldError::new(
                "breaker_min_calls",
                format!(
                    "must be at most the window ({} calls), got {}",
                    self.breaker_window, self.breaker_min_calls
                ),
            ));
        }
        Ok(())
    }
}

impl From<PolicySection> for UpstreamPolicy {
    fn from(s: PolicySection) -> Self {
        UpstreamPolicy {
            timeout: s.timeout,
            min_budget: s.min_budget,
            breaker: BreakerConfig {
                window: s.breaker_window,
                minimum_calls: s.breaker_min_calls,
                failure_rate: s.failure_rate,
                slow_call: s.slow_call,
                slow_rate: s.slow_rate,
                open_for: s.open_for,
                half_open_calls: s.half_open_calls,
            },
            max_concurrency: s.max_concurrency,
            adaptive_concurrency: s.adaptive_concurrency,
            critical_reserve: s.critical_reserve,
            retry: RetryConfig {
                max_retries: s.retries,
                backoff: s.retry_backoff,
                budget_ratio: f32::from(s.retry_budget) / 100.0,
                min_per_sec: s.retry_min_per_sec,
                ..RetryConfig::default()
            },
            coalesce: s.coalesce,
            hedge_percentile: (s.hedge_percentile > 0).then_some(s.hedge_percentile),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConnectSection {
    #[serde(deserialize_with = "de::duration")]
    connect_timeout: Duration,
}

impl Default for ConnectSection {
    fn default() -> Self {
        ConnectSection {
            connect_timeout: Duration::from_millis(500),
        }
    }
}

impl Section for ConnectSection {}

impl UpstreamsConfig {
    /// Reads the URL and policy of each of `decls`. The `ALL` block is read
    /// on its own first, so a bad value there is named there even when
    /// every upstream overrides it.
    pub fn configure(s: &mut Sources, decls: &[UpstreamDecl]) -> Result<Self, ConfigError> {
        s.section::<PolicySection>("UPSTREAM_ALL")?;
        let mut upstreams = Vec::with_capacity(decls.len());
        for decl in decls {
            let prefix = format!("UPSTREAM_{}", decl.name.to_uppercase());
            let key = format!("BFF_{prefix}");
            let raw = s.take(&key).unwrap_or_else(|| decl.default_url.to_owned());
            let url = de::parse_url(raw.trim())
                .map_err(|message| ConfigError::new(&key, format!("{message} (got {raw:?})")))?;
            let policy: PolicySection = s.layered(&["UPSTREAM_ALL", &prefix])?;
            upstreams.push(UpstreamSettings {
                decl: *decl,
                url,
                policy: policy.into(),
            });
        }
        let connect: ConnectSection = s.section("")?;
        Ok(UpstreamsConfig {
            upstreams,
            connect_timeout: connect.connect_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_section_is_the_default_policy() {
        assert_eq!(
            UpstreamPolicy::from(PolicySection::default()),
            UpstreamPolicy::default()
        );
    }
}
