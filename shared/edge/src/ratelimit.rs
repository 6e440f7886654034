//! Rate limits at the edge, the same in every BFF.
//!
//! Two layers of the API stack around authentication
//! (`api::anonymous` and `api::caller_limit`): inside it,
//! every request is counted against its caller's tier (`free`, `standard`, `premium`; the
//! token's subject is the caller, a partner's client id included); around
//! it, a request that fails authentication is counted against its client
//! IP address under the `anonymous` policy, so guessing tokens is limited
//! too. Every limited response carries the `RateLimit-Policy` and
//! `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11); over the
//! quota the answer is 429 problem+json of the registered `quota-exceeded`
//! type with `Retry-After`.
//!
//! A BFF whose requests cost its upstreams very different amounts declares
//! a [`Cost`] ([`crate::EdgeBuilder::charging`]): each request is then
//! charged its cost in the BFF's unit, the fields count in that unit
//! (`qu="ids"`), an answered request says what it cost in `Request-Cost`
//! (and `bff_ratelimit_cost_total` per tier and client), and a request
//! costing more than what is left is refused whole.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use bff_auth::Claims;
use bff_problem::ApiError;
pub use bff_ratelimit::Cost;
use bff_ratelimit::{Decision, RateLimiter};
use bff_telemetry::names;
use http::{HeaderName, HeaderValue, StatusCode};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `Request-Cost`: the quota units an answered request was charged, where
/// the BFF declares a [`Cost`].
pub const REQUEST_COST: HeaderName = HeaderName::from_static("request-cost");
/// The policy of callers without a valid token (by IP address).
pub const ANONYMOUS: &str = "anonymous";

fn set_fields(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&decision.policy_field()) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&decision.limit_field()) {
        headers.insert(RATELIMIT, v);
    }
}

/// What the two rate-limit layers of the API stack share: the limiter,
/// the addresses over their anonymous quota, and the BFF's name (a metrics
/// label).
#[derive(Debug)]
pub(crate) struct Limits {
    limiter: RateLimiter,
    blocked: Blocked,
    bff: &'static str,
}

impl Limits {
    pub(crate) fn new(limiter: RateLimiter, bff: &'static str) -> Self {
        Limits {
            limiter,
            blocked: Blocked::new(),
            bff,
        }
    }

    fn refused(&self, decision: &Decision, client: &str) -> Response {
        metrics::counter!(
            names::RATE_LIMITED,
            "bff" => self.bff,
            "tier" => decision.policy,
            "client" => client.to_owned()
        )
        .increment(1);
        let mut problem = ApiError::quota_exceeded(decision.policy, decision.retry_after_secs());
        if let Some(unit) = decision.unit {
            let (policy, cost) = (decision.policy, decision.cost);
            problem = problem.with_detail(if decision.exceeds_quota() {
                format!(
                    "this request costs {cost} {unit}, more than the whole {policy} quota of {} per {} s",
                    decision.quota.limit,
                    decision.quota.window.as_secs().max(1)
                )
            } else {
                format!(
                    "this request costs {cost} {unit}, more than is left of the {policy} quota; retry in {} s",
                    decision.retry_after_secs()
                )
            });
        }
        let mut response = problem.into_response();
        set_fields(&mut response, decision);
        response
    }

    /// Inside authentication: charges the request (`cost` units of
    /// `unit`, or one request) to its caller's tier and subject. `Err` is
    /// the refusal (429); `Ok` the decision whose fields go on the
    /// response, if the caller is limited.
    pub(crate) async fn per_caller(
        &self,
        claims: Option<&Claims>,
        cost: u32,
        unit: Option<&'static str>,
    ) -> Result<Option<Decision>, Response> {
        let Some(claims) = claims else {
            return Ok(None);
        };
        let Some(decision) = self
            .limiter
            .check_cost(claims.tier.as_str(), &claims.sub, cost, unit)
            .await
        else {
            return Ok(None);
        };
        if !decision.allowed {
            return Err(self.refused(&decision, client_label(&claims.sub)));
        }
        if decision.unit.is_some() {
            metrics::counter!(
                names::RATE_LIMIT_COST,
                "bff" => self.bff,
                "tier" => decision.policy,
                "client" => client_label(&claims.sub).to_owned()
            )
            .increment(u64::from(decision.cost));
        }
        Ok(Some(decision))
    }

    /// Around authentication, before it: the refusal of a client address
    /// while its `anonymous` quota is used up (before its token is even
    /// looked at).
    pub(crate) fn anonymous_before(&self, ip: IpAddr) -> Result<(), Box<Response>> {
        match self.blocked.get(ip) {
            Some(decision) => Err(Box::new(self.refused(&decision, ANONYMOUS))),
            None => Ok(()),
        }
    }

    /// Around authentication, after it: a 401 costs the client address one
    /// request of the `anonymous` quota.
    pub(crate) async fn anonymous_after(&self, ip: IpAddr, response: Response) -> Response {
        if response.status() != StatusCode::UNAUTHORIZED {
            return response;
        }
        match self.limiter.check(ANONYMOUS, &ip.to_string()).await {
            Some(decision) if !decision.allowed => {
                self.blocked.insert(ip, &decision);
                self.refused(&decision, ANONYMOUS)
            }
            Some(decision) => with_fields(response, Some(&decision)),
            None => response,
        }
    }
}

/// The metrics label of a caller: a partner's client id (few, and worth
/// naming), else `user` (a user id would make one series per user).
fn client_label(subject: &str) -> &str {
    if uuid::Uuid::try_parse(subject).is_ok() {
        "user"
    } else {
        subject
    }
}

/// Adds the `RateLimit` fields of `decision` to `response`, and what the
/// request cost when it was charged in a declared unit.
pub(crate) fn with_fields(mut response: Response, decision: Option<&Decision>) -> Response {
    if let Some(decision) = decision {
        set_fields(&mut response, decision);
        if decision.unit.is_some() {
            response
                .headers_mut()
                .insert(REQUEST_COST, HeaderValue::from(decision.cost));
        }
    }
    response
}

/// The cost of `request` under `cost` (1 without one), and its unit.
pub(crate) fn cost_of(
    cost: Option<&Cost>,
    request: axum::extract::Request,
) -> (axum::extract::Request, u32, Option<&'static str>) {
    let Some(cost) = cost else {
        return (request, 1, None);
    };
    let (parts, body) = request.into_parts();
    let units = (cost.of)(&parts).max(1);
    (
        axum::extract::Request::from_parts(parts, body),
        units,
        Some(cost.unit),
    )
}

/// Addresses over the anonymous quota, until when. Bounded, so a flood of
/// addresses cannot grow it without end.
#[derive(Debug, Clone)]
struct Blocked(moka::sync::Cache<IpAddr, (Instant, Decision)>);

impl Blocked {
    fn new() -> Self {
        Blocked(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        )
    }

    fn get(&self, ip: IpAddr) -> Option<Decision> {
        let (until, decision) = self.0.get(&ip)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(Decision {
            retry_after: left,
            reset: decision.reset.max(left),
            ..decision
        })
    }

    fn insert(&self, ip: IpAddr, decision: &Decision) {
        self.0.insert(
            ip,
            (Instant::now() + decision.retry_after, decision.clone()),
        );
    }
}
