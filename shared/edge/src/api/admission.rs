//! Admission: a place among the API requests in flight before any work is
//! done ([`crate::BffConfig::max_in_flight`], sized to the load by
//! [`crate::in_flight`]; one bound for every API route, waiters served in
//! arrival order), for at most the request deadline
//! (`BFF_DEADLINE_REQUEST`), after which the answer is 503 with
//! `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bff_problem::ApiError;

use super::{Next, ResponseFuture, Step};
use crate::in_flight::{GaveUp, InFlight};

/// Waits for a place among the API requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    bound: Option<Arc<InFlight>>,
    patience: Duration,
}

impl Admission {
    /// `bound` is shared by every route the stack is applied to; `None`
    /// admits every request at once.
    pub(crate) fn new(bound: Option<Arc<InFlight>>, patience: Duration) -> Self {
        Admission { bound, patience }
    }
}

impl Step for Admission {
    fn call<N: Next>(&self, next: N, request: Request) -> ResponseFuture {
        let Some(bound) = self.bound.clone() else {
            return next.run(request);
        };
        let patience = self.patience;
        Box::pin(async move {
            // Held until the response is made (dropped with the future).
            let _place = match bound.enter(patience).await {
                Ok(place) => place,
                Err(gave_up) => return Ok(overloaded(gave_up)),
            };
            next.run(request).await
        })
    }
}

/// The answer to a request that waited the whole request deadline for a
/// place among those in flight: the replica is past what its CPU or its
/// upstreams get through, and working on a request this late would only
/// answer a client that has given up while the queue behind it grows.
fn overloaded(gave_up: GaveUp) -> Response {
    tracing::debug!(
        waited_ms = gave_up.0.as_millis(),
        "request refused: no place among the requests in flight within the request deadline"
    );
    ApiError::unavailable(
        format!(
            "the server is at its bound on requests in flight and this request could not start within {} ms",
            gave_up.0.as_millis()
        ),
        1,
    )
    .into_response()
}
