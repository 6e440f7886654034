//! Observe: one span and one latency sample per call, with its outcome.
//!
//! The sample is recorded by a drop guard, so a call abandoned by its
//! caller (a section deadline) is still measured, as a `timeout`. gRPC
//! calls are measured as `rpc.client.call.duration`, HTTP ones (REST,
//! GraphQL) as `http.client.request.duration`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bff_telemetry::names;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::CallService;
use crate::call::{UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;
use crate::registry::Protocol;

/// Applies [`Observe`].
#[derive(Debug, Clone, Copy)]
pub struct ObserveLayer {
    upstream: &'static str,
    protocol: Protocol,
}

impl ObserveLayer {
    /// Observes the calls to `upstream`.
    pub fn new(upstream: &'static str, protocol: Protocol) -> Self {
        ObserveLayer { upstream, protocol }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            layer: *self,
            inner,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    layer: ObserveLayer,
    inner: S,
}

/// Records the sample when dropped: with the outcome if the call finished,
/// as a timeout if it was abandoned.
struct Sample {
    layer: ObserveLayer,
    operation: &'static str,
    started: Instant,
    outcome: Option<&'static str>,
    span: tracing::Span,
}

impl Drop for Sample {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or_else(|| {
            self.span.record("outcome", "timeout");
            "timeout"
        });
        let seconds = self.started.elapsed().as_secs_f64();
        let ObserveLayer { upstream, protocol } = self.layer;
        let name = match protocol {
            Protocol::Grpc => names::RPC_CLIENT_DURATION,
            Protocol::Rest | Protocol::GraphQl => names::CLIENT_DURATION,
        };
        metrics::histogram!(name, "upstream" => upstream, "operation" => self.operation, "outcome" => outcome)
            .record(seconds);
    }
}

impl<S: CallService> Service<UpstreamRequest> for Observe<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let layer = self.layer;
        let operation = request.info.operation;
        let span = tracing::debug_span!(
            "upstream",
            upstream = layer.upstream,
            protocol = layer.protocol.as_str(),
            operation,
            outcome = tracing::field::Empty,
            "http.request.resend_count" = tracing::field::Empty,
        );
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ObserveFuture {
            sample: Sample {
                layer,
                operation,
                started: Instant::now(),
                outcome: None,
                span: span.clone(),
            },
            inner: call.instrument(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// Records the call's sample when it ends, or when it is dropped.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        sample: Sample,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<UpstreamResponse, UpstreamError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.failure.outcome(),
        };
        this.sample.outcome = Some(outcome);
        let span = this.inner.span();
        span.record("outcome", outcome);
        if let Err(error) = &result {
            tracing::debug!(parent: span, %error, "upstream call failed");
        }
        Poll::Ready(result)
    }
}
