//! Request quotas per caller, with the Generic Cell Rate Algorithm (GCRA).
//!
//! A [`Quota`] allows `limit` requests per `window`, spread evenly: one
//! request's worth of allowance comes back every `window / limit`, and a
//! caller with nothing outstanding may burst the whole `limit` at once.
//! Each named [`Policy`] (a tier: `free`, `standard`, `premium`, or
//! `anonymous` for callers without a valid token) has its own quota, and
//! every caller (a subject, a partner's client id, an IP address) its own
//! allowance within it.
//!
//! In process the allowance lives in `governor`'s keyed limiter. With
//! Redis it lives in Redis, checked by one atomic script per request using
//! Redis's clock, so the quota holds across every replica. Redis is never a
//! dependency: a check that fails or takes longer than its timeout is
//! counted and logged, and answered by the in-process limiter instead (a
//! replica then enforces the quota on its own share of the traffic).
//!
//! A request costs one unit of its caller's quota unless its BFF declares
//! a [`Cost`]: a partner's batch of 50 ids costs the upstreams 50 times what
//! one id costs, so it is charged 50 (`check_cost`), and the policy's quota
//! is then counted in that unit (`qu="ids"` in `RateLimit-Policy`). A
//! request costing more than what is left is refused whole, and one costing
//! more than the whole quota can never pass (it says so rather than asking
//! the caller to retry).
//!
//! A [`Decision`] carries what the `RateLimit-Policy` and `RateLimit`
//! fields of draft-ietf-httpapi-ratelimit-headers-11 say.

#![warn(missing_docs)]

mod settings;

pub use settings::configured_policies;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bff_telemetry::names;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

/// `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per window (≥ 1).
    pub limit: u32,
    /// The window (≥ 1 ms).
    pub window: Duration,
}

impl Quota {
    /// Parses `600/60s` (requests per window).
    pub fn parse(raw: &str) -> Result<Quota, String> {
        let (limit, window) = raw
            .split_once('/')
            .ok_or_else(|| "expected requests/window, such as 600/60s".to_owned())?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| format!("{limit:?} is not a whole number of requests"))?;
        let window = parse_duration(window.trim())?;
        Quota::new(limit, window)
    }

    /// A quota, if both parts are positive.
    pub fn new(limit: u32, window: Duration) -> Result<Quota, String> {
        if limit == 0 {
            return Err("the limit must be at least 1 request".to_owned());
        }
        if window < Duration::from_millis(1) {
            return Err("the window must be at least 1ms".to_owned());
        }
        Ok(Quota { limit, window })
    }

    /// Time for one request's allowance to come back.
    pub fn interval(&self) -> Duration {
        self.window / self.limit
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{raw:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 60s"))?;
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(format!("{raw:?}: the unit must be ms, s, m or h")),
    };
    Ok(unit * u32::try_from(number).map_err(|_| format!("{raw:?} is too long"))?)
}

/// What a BFF charges its callers' quotas in, declared by the team that
/// owns the BFF (a request costs 1 without one): the unit's name, as the
/// `qu` parameter of `RateLimit-Policy` says it, and the cost of a request,
/// from what it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// The quota unit (`ids`).
    pub unit: &'static str,
    /// The units a request costs (at least 1; 0 is taken as 1).
    pub of: fn(&http::request::Parts) -> u32,
}

/// A named quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The name in the `RateLimit` fields (`standard`, …).
    pub name: &'static str,
    /// Its quota.
    pub quota: Quota,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The policy checked.
    pub policy: &'static str,
    /// Its quota.
    pub quota: Quota,
    /// The unit the quota is counted in, when not requests.
    pub unit: Option<&'static str>,
    /// What the request was charged (or would have been, when refused).
    pub cost: u32,
    /// Whether the request may go on.
    pub allowed: bool,
    /// Units (requests, unless `unit` says otherwise) the caller may still
    /// spend at once.
    pub remaining: u32,
    /// Until the caller's whole quota is available again.
    pub reset: Duration,
    /// When refused: until the next request would be allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// The `RateLimit-Policy` field: `"standard";q=600;w=60`, with the
    /// quota unit when it is not requests (`"premium";q=100;qu="ids";w=60`).
    pub fn policy_field(&self) -> String {
        let window = self.quota.window.as_secs().max(1);
        match self.unit {
            None => format!("\"{}\";q={};w={window}", self.policy, self.quota.limit),
            Some(unit) => format!(
                "\"{}\";q={};qu=\"{unit}\";w={window}",
                self.policy, self.quota.limit
            ),
        }
    }

    /// Whether the request costs more than the whole quota: it can never
    /// pass, however long the caller waits.
    pub fn exceeds_quota(&self) -> bool {
        self.cost > self.quota.limit
    }

    /// The `RateLimit` field: `"standard";r=541;t=17`.
    pub fn limit_field(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.policy,
            self.remaining,
            ceil_secs(self.reset)
        )
    }

    /// Whole seconds to wait before retrying (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Configuration of a [`RateLimiter`].
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// The policies.
    pub policies: Vec<Policy>,
    /// `REDIS_URL`: checks across replicas; `None` keeps them in process.
    pub redis_url: Option<String>,
    /// Longest a Redis check may take before the local limiter answers.
    pub redis_timeout: Duration,
    /// Prefix of the Redis keys (one per BFF: each has its own quotas).
    pub namespace: String,
}

/// Why a limiter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct LimiterError(#[from] redis::RedisError);

type Local = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

struct Limit {
    policy: Policy,
    local: Local,
}

struct Shared {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    timeout: Duration,
}

struct Inner {
    limits: HashMap<&'static str, Limit>,
    clock: DefaultClock,
    shared: Option<Shared>,
    namespace: String,
}

/// Checks requests against their policy's quota. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policies", &self.inner.limits.keys().collect::<Vec<_>>())
            .field("shared", &self.inner.shared.is_some())
            .finish()
    }
}

/// GCRA in one atomic step, on Redis's clock. KEYS[1]: the caller's
/// theoretical arrival time (ms). ARGV: interval and window (ms), and the
/// request's cost in units. Returns {allowed, remaining, reset ms,
/// retry-after ms}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
if new_tat - now > window then
  return {0, 0, tat - now, new_tat - now - window}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0}
";

impl RateLimiter {
    /// Builds the limiter. With a Redis URL the connection is made lazily
    /// and re-made by itself. Must run inside a Tokio runtime.
    pub fn new(config: LimiterConfig) -> Result<Self, LimiterError> {
        let clock = DefaultClock::default();
        let limits = config
            .policies
            .into_iter()
            .map(|policy| {
                let quota = policy.quota;
                let limit = NonZeroU32::new(quota.limit).unwrap_or(NonZeroU32::MIN);
                let gcra =
                    governor::Quota::with_period(quota.interval().max(Duration::from_nanos(1)))
                        .unwrap_or_else(|| governor::Quota::per_second(limit))
                        .allow_burst(limit);
                let local = governor::RateLimiter::dashmap_with_clock(gcra, clock.clone())
                    .with_middleware::<StateInformationMiddleware>();
                (policy.name, Limit { policy, local })
            })
            .collect();
        let shared = match &config.redis_url {
            None => None,
            Some(url) => {
                let (_, conn) = bff_redis::connect(url, config.redis_timeout)?;
                Some(Shared {
                    conn,
                    script: redis::Script::new(GCRA),
                    timeout: config.redis_timeout,
                })
            }
        };
        let limiter = RateLimiter {
            inner: Arc::new(Inner {
                limits,
                clock,
                shared,
                namespace: config.namespace,
            }),
        };
        limiter.forget_idle_callers();
        Ok(limiter)
    }

    /// The quota of `policy`, if there is one.
    pub fn policy(&self, policy: &str) -> Option<&Policy> {
        self.inner.limits.get(policy).map(|l| &l.policy)
    }

    /// Counts one request of `caller` under `policy`; `None` when no such
    /// policy is configured.
    pub async fn check(&self, policy: &str, caller: &str) -> Option<Decision> {
        self.check_cost(policy, caller, 1, None).await
    }

    /// Charges `cost` units (at least 1) of `caller`'s quota under
    /// `policy`, counted in `unit` (`None`: requests), all or nothing;
    /// `None` when no such policy is configured.
    pub async fn check_cost(
        &self,
        policy: &str,
        caller: &str,
        cost: u32,
        unit: Option<&'static str>,
    ) -> Option<Decision> {
        let limit = self.inner.limits.get(policy)?;
        let cost = cost.max(1);
        if cost > limit.policy.quota.limit {
            return Some(self.never(limit, cost, unit));
        }
        if let Some(shared) = &self.inner.shared
            && let Some(decision) = self.check_shared(shared, limit, caller, cost, unit).await
        {
            return Some(decision);
        }
        Some(self.check_local(limit, caller, cost, unit))
    }

    /// A request costing more than the whole quota: refused without
    /// touching the caller's allowance (what is left is not known here, so
    /// none is claimed).
    fn never(&self, limit: &Limit, cost: u32, unit: Option<&'static str>) -> Decision {
        let quota = limit.policy.quota;
        Decision {
            policy: limit.policy.name,
            quota,
            unit,
            cost,
            allowed: false,
            remaining: 0,
            reset: quota.window,
            retry_after: quota.window,
        }
    }

    fn check_local(
        &self,
        limit: &Limit,
        caller: &str,
        cost: u32,
        unit: Option<&'static str>,
    ) -> Decision {
        let quota = limit.policy.quota;
        let interval = quota.interval();
        let n = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        let (allowed, remaining, retry_after) = match limit.local.check_key_n(&caller.to_owned(), n)
        {
            Ok(Ok(state)) => (true, state.remaining_burst_capacity(), Duration::ZERO),
            Ok(Err(not_until)) => (false, 0, not_until.wait_time_from(self.inner.clock.now())),
            // More than the burst: `check_cost` refuses it before.
            Err(_) => return self.never(limit, cost, unit),
        };
        Decision {
            policy: limit.policy.name,
            quota,
            unit,
            cost,
            allowed,
            remaining,
            reset: interval * quota.limit.saturating_sub(remaining),
            retry_after,
        }
    }

    async fn check_shared(
        &self,
        shared: &Shared,
        limit: &Limit,
        caller: &str,
        cost: u32,
        unit: Option<&'static str>,
    ) -> Option<Decision> {
        let quota = limit.policy.quota;
        let key = format!("{}:rl:{}:{caller}", self.inner.namespace, limit.policy.name);
        let interval_ms = (quota.interval().as_micros() as f64 / 1000.0).max(0.001);
        let window_ms = quota.window.as_millis() as u64;
        let mut conn = shared.conn.clone();
        let mut invocation = shared.script.key(&key);
        invocation.arg(interval_ms).arg(window_ms).arg(cost);
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            shared.timeout,
            invocation.invoke_async::<(i64, i64, f64, f64)>(&mut conn),
        )
        .await;
        metrics::histogram!(names::RATE_LIMIT_SHARED_DURATION)
            .record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok((allowed, remaining, reset_ms, retry_ms))) => {
                let ms = |v: f64| Duration::from_micros((v.max(0.0) * 1000.0) as u64);
                return Some(Decision {
                    policy: limit.policy.name,
                    quota,
                    unit,
                    cost,
                    allowed: allowed == 1,
                    remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                    reset: ms(reset_ms),
                    retry_after: ms(retry_ms),
                });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", shared.timeout),
        };
        metrics::counter!(names::RATE_LIMIT_SHARED_ERRORS).increment(1);
        tracing::warn!(%error, "shared rate limit check failed; this replica's own limit applies");
        None
    }

    /// Drops, every minute, the in-process state of callers whose allowance
    /// is whole again, so the limiter's memory follows the active callers.
    fn forget_idle_callers(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                for limit in inner.limits.values() {
                    limit.local.retain_recent();
                    limit.local.shrink_to_fit();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_or_say_why_not() {
        assert_eq!(
            Quota::parse("600/60s"),
            Ok(Quota {
                limit: 600,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Quota::parse("5/1m").map(|q| q.interval()),
            Ok(Duration::from_secs(12))
        );
        for bad in [
            "600", "0/60s", "x/60s", "600/60", "600/0s", "600/60y", "600/-1s",
        ] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_follow_the_draft() {
        let mut decision = Decision {
            policy: "premium",
            quota: Quota {
                limit: 600,
                window: Duration::from_secs(60),
            },
            unit: None,
            cost: 1,
            allowed: true,
            remaining: 541,
            reset: Duration::from_millis(16_200),
            retry_after: Duration::ZERO,
        };
        assert_eq!(decision.policy_field(), "\"premium\";q=600;w=60");
        assert_eq!(decision.limit_field(), "\"premium\";r=541;t=17");
        decision.unit = Some("ids");
        assert_eq!(decision.policy_field(), "\"premium\";q=600;qu=\"ids\";w=60");
    }

    fn limiter(limit: u32) -> RateLimiter {
        RateLimiter::new(LimiterConfig {
            policies: vec![Policy {
                name: "standard",
                quota: Quota {
                    limit,
                    window: Duration::from_secs(60),
                },
            }],
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            namespace: "t".to_owned(),
        })
        .expect("limiter")
    }

    #[tokio::test]
    async fn a_caller_bursts_its_quota_then_waits_and_others_are_unaffected() {
        let limiter = limiter(5);
        for expected in (0..5).rev() {
            let d = limiter.check("standard", "ada").await.expect("policy");
            assert!(d.allowed);
            assert_eq!(d.remaining, expected);
        }
        let refused = limiter.check("standard", "ada").await.expect("policy");
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(
            refused.retry_after > Duration::from_secs(10)
                && refused.retry_after <= Duration::from_secs(12),
            "one request comes back every 12 s: {:?}",
            refused.retry_after
        );
        assert_eq!(refused.retry_after_secs(), 12);
        assert!(
            limiter
                .check("standard", "bob")
                .await
                .expect("policy")
                .allowed
        );
        assert!(
            limiter.check("gold", "ada").await.is_none(),
            "no such policy"
        );
    }

    #[tokio::test]
    async fn a_request_is_charged_its_cost_all_or_nothing() {
        let limiter = limiter(100);
        let charge = |cost| limiter.check_cost("standard", "acme", cost, Some("ids"));
        let first = charge(50).await.expect("policy");
        assert!(first.allowed);
        assert_eq!(
            (first.remaining, first.cost, first.unit),
            (50, 50, Some("ids"))
        );
        assert_eq!(charge(50).await.expect("policy").remaining, 0);
        let third = charge(50).await.expect("policy");
        assert!(!third.allowed, "two batches of 50 spend 100");
        assert!(third.retry_after > Duration::from_secs(25), "{third:?}");
        assert!(!third.exceeds_quota());
        // Another caller's single ids are not touched.
        for _ in 0..10 {
            assert!(
                limiter
                    .check_cost("standard", "globex", 1, Some("ids"))
                    .await
                    .expect("policy")
                    .allowed
            );
        }
        // More than the whole quota never passes, and costs nothing.
        let fresh = limiter
            .check_cost("standard", "initech", 101, Some("ids"))
            .await
            .expect("policy");
        assert!(!fresh.allowed && fresh.exceeds_quota());
        let after = limiter
            .check_cost("standard", "initech", 100, Some("ids"))
            .await
            .expect("policy");
        assert!(after.allowed, "the refused request cost nothing");
        // 0 is charged as 1.
        assert_eq!(
            limiter
                .check_cost("standard", "hooli", 0, None)
                .await
                .expect("policy")
                .remaining,
            99
        );
    }
}
