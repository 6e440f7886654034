//! OTLP export, configured by the standard `OTEL_*` variables.
//!
//! The exporters' network I/O (tonic for gRPC, reqwest for HTTP/protobuf)
//! needs a Tokio reactor, while OpenTelemetry's batch span processor and
//! periodic metric reader export from threads of their own. Rather than
//! enabling the SDK's experimental async-runtime processors (which would run
//! export on the request runtime), each exporter is wrapped in
//! [`OnRuntime`]: its futures are polled inside a small runtime of its own,
//! so exporting never takes a request worker's time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The transport.
    pub protocol: Protocol,
    /// The endpoint as configured (the SDK derives the signal's path).
    pub endpoint: String,
}

/// What is exported over OTLP. With no endpoint set nothing is, and no
/// span is recorded at all: the cost is that of W3C propagation alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportConfig {
    /// `OTEL_SERVICE_NAME`, when set.
    pub service_name: Option<String>,
    /// Spans, when exported.
    pub traces: Option<Target>,
    /// Metrics, when exported (they are always at `/metrics` as well).
    pub metrics: Option<Target>,
}

/// A bad `OTEL_*` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ExportConfigError {
    /// The variable.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> ExportConfigError {
    ExportConfigError {
        key,
        message: message.into(),
    }
}

/// The `OTEL_*` variables this module reads (the SDK reads others itself:
/// headers, timeouts, compression, sampler, batch sizes, resource attributes).
pub const VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
];

impl ExportConfig {
    /// Reads the standard variables through `get` (the process environment
    /// in binaries). Values the SDK would silently ignore or replace are
    /// refused here, so a typo is a start-up error, not a missing trace.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ExportConfigError> {
        let get = |key: &str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let service_name = get("OTEL_SERVICE_NAME");
        match get("OTEL_SDK_DISABLED").as_deref() {
            None | Some("false") => {}
            Some("true") => {
                return Ok(ExportConfig {
                    service_name,
                    ..Default::default()
                });
            }
            Some(other) => {
                return Err(problem(
                    "OTEL_SDK_DISABLED",
                    format!("expected true or false (got {other:?})"),
                ));
            }
        }
        let generic = get("OTEL_EXPORTER_OTLP_ENDPOINT");
        let traces = target(
            &get,
            ("OTEL_TRACES_EXPORTER", &["otlp", "none"]),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            generic.as_deref(),
        )?;
        let metrics = target(
            &get,
            ("OTEL_METRICS_EXPORTER", &["otlp", "prometheus", "none"]),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            generic.as_deref(),
        )?;
        Ok(ExportConfig {
            service_name,
            traces,
            metrics,
        })
    }

    /// Whether anything is exported.
    pub fn exports(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }
}

fn target(
    get: &impl Fn(&str) -> Option<String>,
    (exporter_key, allowed): (&'static str, &[&str]),
    endpoint_key: &'static str,
    protocol_key: &'static str,
    generic: Option<&str>,
) -> Result<Option<Target>, ExportConfigError> {
    let exporter = get(exporter_key).unwrap_or_else(|| "otlp".to_owned());
    if !allowed.contains(&exporter.as_str()) {
        return Err(problem(
            exporter_key,
            format!("expected one of {} (got {exporter:?})", allowed.join(", ")),
        ));
    }
    let (key, endpoint) = match get(endpoint_key) {
        Some(e) => (endpoint_key, e),
        None => match generic {
            Some(e) => ("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_owned()),
            None => return Ok(None),
        },
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| problem(key, format!("not a URL ({e}): {endpoint:?}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(problem(
            key,
            format!("expected an http:// or https:// URL with a host (got {endpoint:?})"),
        ));
    }
    let (pkey, raw) = match get(protocol_key) {
        Some(p) => (protocol_key, Some(p)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            get("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match raw.as_deref() {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some("http/json") => {
            return Err(problem(
                pkey,
                "http/json is not supported by this build; use http/protobuf or grpc",
            ));
        }
        Some(other) => {
            return Err(problem(
                pkey,
                format!("expected grpc or http/protobuf (got {other:?})"),
            ));
        }
    };
    if exporter != "otlp" {
        return Ok(None);
    }
    Ok(Some(Target { protocol, endpoint }))
}

/// An exporter whose futures run with `handle`'s runtime as their context.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    pub(crate) inner: E,
    pub(crate) handle: Handle,
}

pin_project_lite::pin_project! {
    /// Polls `inner` with the runtime entered (never held across a poll, so
    /// the future stays `Send`).
    pub(crate) struct Entered<F> {
        #[pin]
        inner: F,
        handle: Handle,
    }
}

impl<F: Future> Future for Entered<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.handle.enter();
        this.inner.poll(cx)
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        Entered {
            inner: self.inner.export(batch),
            handle: self.handle.clone(),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        Entered {
            inner: self.inner.export(metrics),
            handle: self.handle.clone(),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<ExportConfig, ExportConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ExportConfig::from_env(|key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let c = config(&[("OTEL_SERVICE_NAME", "mobile")]).expect("valid");
        assert!(!c.exports());
        assert_eq!(c.service_name.as_deref(), Some("mobile"));
    }

    #[test]
    fn endpoints_and_protocols_per_signal() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ])
        .expect("valid");
        assert_eq!(
            c.traces,
            Some(Target {
                protocol: Protocol::HttpProtobuf,
                endpoint: "http://collector:4318".into()
            })
        );
        assert_eq!(
            c.metrics,
            Some(Target {
                protocol: Protocol::Grpc,
                endpoint: "http://metrics:4317".into()
            })
        );
        let off = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .expect("valid");
        assert!(!off.exports());
        let disabled = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .expect("valid");
        assert!(!disabled.exports());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, key) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                vec![("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
        ] {
            let error = config(&vars).expect_err("invalid");
            assert_eq!(error.key, key, "{error}");
        }
    }
}
