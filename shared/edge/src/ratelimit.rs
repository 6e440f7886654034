//! Rate limits at the edge, the same in every BFF.
//!
//! Two steps of the API routes' layer around authentication: inside it,
//! every request is counted against its caller's tier (`free`, `standard`, `premium`; the
//! token's subject is the caller, a partner's client id included); around
//! it, a request that fails authentication is counted against its client
//! IP address under the `anonymous` policy, so guessing tokens is limited
//! too. Every limited response carries the `RateLimit-Policy` and
//! `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11); over the
//! quota the answer is 429 problem+json of the registered `quota-exceeded`
//! type with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use bff_auth::Claims;
use bff_problem::ApiError;
use bff_ratelimit::Decision;
use bff_telemetry::names;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::shared::Shared;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
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

fn refused(shared: &Shared, decision: &Decision, client: &str) -> Response {
    metrics::counter!(
        names::RATE_LIMITED,
        "bff" => shared.config().name,
        "tier" => decision.policy,
        "client" => client.to_owned()
    )
    .increment(1);
    let mut response =
        ApiError::quota_exceeded(decision.policy, decision.retry_after_secs()).into_response();
    set_fields(&mut response, decision);
    response
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

/// Inside authentication: counts the request against its caller's tier
/// and subject. `Err` is the refusal (429); `Ok` the decision whose fields
/// go on the response, if the caller is limited.
pub(crate) async fn per_caller(
    shared: &Shared,
    claims: Option<&Claims>,
) -> Result<Option<Decision>, Response> {
    let (Some(limiter), Some(claims)) = (shared.limiter(), claims) else {
        return Ok(None);
    };
    let Some(decision) = limiter.check(claims.tier.as_str(), &claims.sub).await else {
        return Ok(None);
    };
    if !decision.allowed {
        return Err(refused(shared, &decision, client_label(&claims.sub)));
    }
    Ok(Some(decision))
}

/// Adds the `RateLimit` fields of `decision` to `response`.
pub(crate) fn with_fields(mut response: Response, decision: Option<&Decision>) -> Response {
    if let Some(decision) = decision {
        set_fields(&mut response, decision);
    }
    response
}

/// Around authentication, before it: the client address whose failed
/// authentications are counted (none without a limiter), or its refusal
/// while its `anonymous` quota is used up (before its token is even looked
/// at).
pub(crate) fn anonymous_before(
    shared: &Shared,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Result<Option<IpAddr>, Box<Response>> {
    let (Some(_), Some(ip)) = (shared.limiter(), peer.map(|c| c.0.ip())) else {
        return Ok(None);
    };
    match shared.blocked(ip) {
        Some(decision) => Err(Box::new(refused(shared, &decision, ANONYMOUS))),
        None => Ok(Some(ip)),
    }
}

/// Around authentication, after it: a 401 costs the client address one
/// request of the `anonymous` quota.
pub(crate) async fn anonymous_after(shared: &Shared, ip: IpAddr, response: Response) -> Response {
    let Some(limiter) = shared.limiter() else {
        return response;
    };
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    match limiter.check(ANONYMOUS, &ip.to_string()).await {
        Some(decision) if !decision.allowed => {
            shared.block(ip, &decision);
            refused(shared, &decision, ANONYMOUS)
        }
        Some(decision) => with_fields(response, Some(&decision)),
        None => response,
    }
}

/// Addresses over the anonymous quota, until when. Bounded, so a flood of
/// addresses cannot grow it without end.
#[derive(Debug, Clone)]
pub(crate) struct Blocked(moka::sync::Cache<IpAddr, (Instant, Decision)>);

impl Blocked {
    pub(crate) fn new() -> Self {
        Blocked(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        )
    }

    pub(crate) fn get(&self, ip: IpAddr) -> Option<Decision> {
        let (until, decision) = self.0.get(&ip)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(Decision {
            retry_after: left,
            reset: decision.reset.max(left),
            ..decision
        })
    }

    pub(crate) fn insert(&self, ip: IpAddr, decision: &Decision) {
        self.0.insert(
            ip,
            (Instant::now() + decision.retry_after, decision.clone()),
        );
    }
}
