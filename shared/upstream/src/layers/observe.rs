//! Observe: one span and one latency sample per call, with its outcome.
//!
//! The sample is recorded by a drop guard, so a call abandoned by its
//! caller (a section deadline) is still measured, as a `timeout`. gRPC
//! calls are measured as `rpc.client.call.duration` (with `rpc.system.name`,
//! `rpc.method` and `rpc.status_code`), HTTP ones (REST, GraphQL) as
//! `http.client.request.duration` (with `http.request.method` and
//! `http.response.status_code`), per the OpenTelemetry semantic conventions.
//!
//! The span is a client span when spans are exported: the call's
//! `traceparent` then names it, so the upstream's own span is its child.
//! Retries, the circuit's state and coalescing are recorded on it by the
//! layers below.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bff_telemetry::names;
use parking_lot::RwLock;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::CallService;
use metrics::SharedString;

use crate::call::Protocol;
use crate::call::{Target, UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};

/// Applies [`Observe`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    upstream: &'static str,
    protocol: Protocol,
    handles: Arc<Handles>,
}

/// What identifies a sample's label set, by address: operation, gRPC
/// method, HTTP method, outcome (all `&'static str`) and status code.
type HandleKey = (usize, usize, usize, usize, u16);

/// The latency histogram of each label set met so far, so that a sample
/// skips building and hashing a seven-label key (the `metrics` macros do
/// that on every call).
#[derive(Debug, Default)]
struct Handles(RwLock<HashMap<HandleKey, metrics::Histogram>>);

impl ObserveLayer {
    /// Observes the calls to `upstream`.
    pub fn new(upstream: &'static str, protocol: Protocol) -> Self {
        ObserveLayer {
            upstream,
            protocol,
            handles: Arc::default(),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            layer: self.clone(),
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
    /// `package.Service/Method` for gRPC, else empty.
    rpc_method: &'static str,
    /// The HTTP method, for HTTP calls.
    method: &'static str,
    started: Instant,
    outcome: Option<&'static str>,
    failure: Option<Failure>,
    /// The HTTP status answered, when there was an answer.
    status: Option<u16>,
    span: tracing::Span,
}

/// The gRPC status name a failure stands for (`rpc.status_code`). Calls
/// that were never sent (open circuit, shed) read `UNAVAILABLE`, as a
/// gRPC client library reports a channel it could not use.
fn grpc_status(result: Option<Failure>) -> &'static str {
    match result {
        None => "OK",
        Some(Failure::Timeout) => "DEADLINE_EXCEEDED",
        Some(Failure::NotFound) => "NOT_FOUND",
        Some(Failure::RateLimited) => "RESOURCE_EXHAUSTED",
        Some(Failure::Status(400)) => "INVALID_ARGUMENT",
        Some(Failure::Status(401)) => "UNAUTHENTICATED",
        Some(Failure::Status(403)) => "PERMISSION_DENIED",
        Some(Failure::Status(409)) => "ABORTED",
        Some(Failure::Unavailable | Failure::CircuitOpen | Failure::Shed) => "UNAVAILABLE",
        Some(Failure::Status(_) | Failure::InvalidResponse | Failure::GraphQl) => "INTERNAL",
    }
}

/// The HTTP status of an answer (`http.response.status_code`), when there
/// was one (computed once per label set: the handles are kept).
fn http_status(status: Option<u16>) -> SharedString {
    status.map_or(SharedString::const_str(""), |code| {
        SharedString::from(code.to_string())
    })
}

impl Drop for Sample {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or_else(|| {
            self.span.record("outcome", "timeout");
            self.span.record("error.type", "timeout");
            "timeout"
        });
        let failure = match outcome {
            "ok" => None,
            _ => Some(self.failure.unwrap_or(Failure::Timeout)),
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let code = match failure {
            Some(Failure::Status(code)) => code,
            _ => self.status.unwrap_or(0),
        };
        let key: HandleKey = (
            self.operation.as_ptr() as usize,
            self.rpc_method.as_ptr() as usize,
            self.method.as_ptr() as usize,
            outcome.as_ptr() as usize,
            code,
        );
        let handles = &self.layer.handles.0;
        let known = handles.read().get(&key).cloned();
        let histogram = match known {
            Some(histogram) => histogram,
            None => {
                let histogram = self.register(outcome, failure);
                handles.write().insert(key, histogram.clone());
                histogram
            }
        };
        histogram.record(seconds);
    }
}

impl Sample {
    fn register(&self, outcome: &'static str, failure: Option<Failure>) -> metrics::Histogram {
        let ObserveLayer {
            upstream, protocol, ..
        } = self.layer;
        let operation = self.operation;
        match protocol {
            Protocol::Grpc => metrics::histogram!(
                names::RPC_CLIENT_DURATION,
                "upstream" => upstream,
                "operation" => operation,
                "outcome" => outcome,
                "rpc.system.name" => "grpc",
                "rpc.method" => self.rpc_method,
                "rpc.status_code" => grpc_status(failure)
            ),
            Protocol::Rest | Protocol::GraphQl => metrics::histogram!(
                names::CLIENT_DURATION,
                "upstream" => upstream,
                "operation" => operation,
                "outcome" => outcome,
                "http.request.method" => self.method,
                "http.response.status_code" => http_status(self.status),
                "error.type" => if failure.is_some() { outcome } else { "" }
            ),
        }
    }
}

impl<S: CallService> Service<UpstreamRequest> for Observe<S> {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: UpstreamRequest) -> Self::Future {
        let layer = self.layer.clone();
        let operation = request.info.operation;
        let rpc_method = match request.target {
            Target::GrpcMethod(path) => path.trim_start_matches('/'),
            Target::Url(_) => "",
        };
        let method = bff_telemetry::method_label(&request.method);
        let grpc = layer.protocol == Protocol::Grpc;
        // A call of a trace the sampler dropped gets no span (its
        // `traceparent` already says "not sampled" to the upstream).
        let span = if bff_telemetry::recording() && !sampled(&request.headers) {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                "upstream",
                otel.name = %format_args!("{} {}", layer.upstream, operation),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                upstream = layer.upstream,
                protocol = layer.protocol.as_str(),
                operation,
                outcome = tracing::field::Empty,
                error.type = tracing::field::Empty,
                "rpc.system.name" = if grpc { "grpc" } else { "" },
                rpc.method = rpc_method,
                rpc.status_code = tracing::field::Empty,
                http.request.method = method,
                http.response.status_code = tracing::field::Empty,
                "http.request.resend_count" = tracing::field::Empty,
                bff.circuit.state = tracing::field::Empty,
                bff.coalesced = tracing::field::Empty,
            )
        };
        // The upstream's span is a child of this call's span (exported
        // spans only; otherwise the headers the client set stand).
        bff_telemetry::inject_span(&span, &mut request.headers);
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ObserveFuture {
            sample: Sample {
                layer,
                operation,
                rpc_method,
                method,
                started: Instant::now(),
                outcome: None,
                failure: None,
                status: None,
                span: span.clone(),
            },
            inner: call.instrument(span),
        }
    }
}

/// Whether the call's `traceparent` has the sampled flag (W3C: the last
/// two hex digits are the flags; bit 0 is "sampled"). No header: sampled.
fn sampled(headers: &http::HeaderMap) -> bool {
    headers.get("traceparent").is_none_or(|tp| {
        let tp = tp.as_bytes();
        tp.len() >= 2
            && std::str::from_utf8(&tp[tp.len() - 2..])
                .ok()
                .and_then(|flags| u8::from_str_radix(flags, 16).ok())
                .is_some_and(|flags| flags & 1 == 1)
    })
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
        let span = this.inner.span();
        let sample = &mut *this.sample;
        match &result {
            Ok(response) => {
                sample.outcome = Some("ok");
                sample.status = Some(response.status.as_u16());
                span.record("outcome", "ok");
            }
            Err(error) => {
                let outcome = error.failure.outcome();
                sample.outcome = Some(outcome);
                sample.failure = Some(error.failure);
                if let Failure::Status(code) = error.failure {
                    sample.status = Some(code);
                }
                span.record("outcome", outcome);
                span.record("error.type", outcome);
                span.record("otel.status_code", "error");
                tracing::debug!(parent: span, %error, "upstream call failed");
            }
        }
        if sample.layer.protocol == Protocol::Grpc {
            span.record("rpc.status_code", grpc_status(sample.failure));
        } else if let Some(status) = sample.status {
            span.record("http.response.status_code", i64::from(status));
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::call::test_request;

    /// The samples of the gRPC call duration, by `(outcome, rpc.status_code)`.
    fn samples(snapshotter: &Snapshotter) -> Vec<(String, String, usize)> {
        let mut found = Vec::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if key.name() != names::RPC_CLIENT_DURATION {
                continue;
            }
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            if let DebugValue::Histogram(values) = value {
                found.push((label("outcome"), label("rpc.status_code"), values.len()));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn a_call_dropped_before_its_answer_is_measured_as_a_timeout() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let (service, mut handle) = mock::pair::<UpstreamRequest, UpstreamResponse>();
                let service = service
                    .map_err(|e| UpstreamError::new("t", Failure::Unavailable, e.to_string()));
                let observed = ObserveLayer::new("t", Protocol::Grpc).layer(service);
                handle.allow(2);

                // Answered: measured with its outcome.
                let answered = tokio::spawn(observed.clone().oneshot(test_request()));
                let (_, reply) = handle.next_request().await.expect("the call");
                reply.send_response(UpstreamResponse {
                    status: StatusCode::OK,
                    decoded: Arc::new(()),
                });
                answered.await.expect("task").expect("answered");

                // Abandoned by its caller at a deadline above this layer,
                // while the upstream still holds it.
                let abandoned = tokio::time::timeout(
                    Duration::from_millis(50),
                    observed.oneshot(test_request()),
                );
                let abandoned = tokio::spawn(abandoned);
                let (_request, _reply_never_sent) =
                    handle.next_request().await.expect("the second call");
                assert!(
                    abandoned.await.expect("task").is_err(),
                    "the caller gave up"
                );
            });
        });
        assert_eq!(
            samples(&snapshotter),
            [
                ("ok".to_owned(), "OK".to_owned(), 1),
                ("timeout".to_owned(), "DEADLINE_EXCEEDED".to_owned(), 1),
            ]
        );
    }
}
