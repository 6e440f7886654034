//! Admission: a place among the API requests in flight before any work is
//! done, within the route's class ([`crate::admission`]), or 503 with
//! `Retry-After` after at most the admission queue's short wait.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bff_limit::{ClassId, Limiter, Refused};
use bff_problem::ApiError;
use bff_telemetry::names;

use super::{Next, ResponseFuture, Step};
use crate::admission::AdmissionClass;

/// Waits, briefly, for a place among the API requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    limit: Option<Arc<Limited>>,
}

/// What admission into one class needs.
#[derive(Debug)]
struct Limited {
    limiter: Arc<Limiter>,
    class: ClassId,
    wait: Duration,
    /// `bff.server.refused` for this class, by reason: full, then
    /// queue_timeout.
    refused: [metrics::Counter; 2],
}

impl Admission {
    /// Admission into `class` of `limiter` (shared by every route the
    /// stack is applied to), waiting at most `wait`; `None` admits every
    /// request at once.
    pub(crate) fn new(
        limiter: Option<&Arc<Limiter>>,
        class: AdmissionClass,
        wait: Duration,
    ) -> Self {
        let limit = limiter.map(|limiter| {
            let in_flight = metrics::gauge!(names::SERVER_IN_FLIGHT, "class" => class.name);
            let refused = |reason: &'static str| {
                metrics::counter!(names::SERVER_REFUSED, "reason" => reason, "class" => class.name)
            };
            Arc::new(Limited {
                class: limiter.class(class.name, class.share, in_flight),
                limiter: limiter.clone(),
                wait,
                refused: [
                    refused(Refused::Full.reason()),
                    refused(Refused::Waited(wait).reason()),
                ],
            })
        });
        Admission { limit }
    }
}

impl Step for Admission {
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        let Some(limit) = self.limit.clone() else {
            return next.run(request);
        };
        Box::pin(async move {
            // Held until the response is made (dropped with the future).
            let _place = match limit.limiter.acquire(limit.class, limit.wait).await {
                Ok(place) => place,
                Err(refused) => return Ok(limit.refuse(refused)),
            };
            next.run(request).await
        })
    }
}

impl Limited {
    /// The answer to a request that found no place: the replica is past
    /// what its CPU gets through at a latency near its usual one, and a
    /// client told so at once can try another replica.
    fn refuse(&self, refused: Refused) -> Response {
        let (counter, detail) = match refused {
            Refused::Full => (
                &self.refused[0],
                "the server is at its limit on requests in flight".to_owned(),
            ),
            Refused::Waited(wait) => (
                &self.refused[1],
                format!(
                    "the server is at its limit on requests in flight and no place freed up within {} ms",
                    wait.as_millis()
                ),
            ),
        };
        counter.increment(1);
        tracing::debug!(reason = refused.reason(), "request refused at admission");
        ApiError::unavailable(detail, 1).into_response()
    }
}
