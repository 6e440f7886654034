//! One initialisation per process: the log subscriber, the propagators,
//! span export and the metrics recorder, and their flush at exit.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sha2::Digest;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;

use crate::export::{ExportConfig, OnRuntime, Protocol, Target};
use crate::{LogFormat, install_metrics, metrics_bridge};

/// How a process's telemetry is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` when `OTEL_SERVICE_NAME` is not set.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax).
    pub log_filter: String,
    /// What is exported over OTLP.
    pub export: ExportConfig,
    /// Log to stderr instead of stdout (when stdout is for something else).
    pub log_to_stderr: bool,
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The export runtime could not start.
    #[error("cannot start the telemetry export thread: {0}")]
    Runtime(#[source] std::io::Error),
    /// An OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter: {message}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// Why.
        message: String,
    },
}

/// The spans OpenTelemetry records: this project's own (the BFFs, shared
/// crates and demo services) down to `debug`, where the per-section and
/// per-call spans are; and warnings from anywhere, as span events. A static
/// filter, so a callsite it does not want (hyper's, h2's) is never asked
/// again; and the log filter stays what `RUST_LOG` says, so these spans
/// cost nothing when no exporter is configured.
pub fn recorded() -> Targets {
    Targets::new()
        .with_target("bff_", Level::DEBUG)
        .with_target("demo_services", Level::DEBUG)
        .with_default(Level::WARN)
}

/// A stable pseudonym of a subject (`enduser.pseudo.id`): the same user is
/// recognisable across spans without their id appearing anywhere.
pub fn pseudonym(subject: &str) -> String {
    let digest = sha2::Sha256::new()
        .chain_update(b"bff-subject\0")
        .chain_update(subject.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The running telemetry of a process; [`shutdown`](Self::shutdown) flushes
/// what is buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn log_layer(format: LogFormat, filter: &str, to_stderr: bool) -> BoxedLayer {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    }
}

fn span_layer(provider: &SdkTracerProvider) -> BoxedLayer {
    // Each of these costs on every poll of an instrumented future (busy and
    // idle times, attaching the context to the thread) or every span (code
    // location, thread, target attributes) and nothing here reads them:
    // propagation goes through the span's own context.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bff"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(recorded())
        .boxed()
}

fn resource(options: &Options) -> Resource {
    let name = options
        .export
        .service_name
        .clone()
        .unwrap_or_else(|| options.service_name.clone());
    let instance: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    Resource::builder()
        .with_service_name(name)
        .with_attributes([
            KeyValue::new("service.version", options.service_version.clone()),
            KeyValue::new("service.instance.id", instance),
        ])
        .build()
}

/// Sets up logging, propagation and, as `options.export` says, OTLP export
/// of spans and metrics. A second call in one process only returns an
/// inert [`Telemetry`] (tests start many apps).
pub fn init(options: &Options) -> Result<Telemetry, InitError> {
    crate::trace_context::install_global_propagator();
    if !options.export.exports() {
        init_with(options, None);
        return Ok(Telemetry::default());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
        .map_err(InitError::Runtime)?;
    let handle = runtime.handle().clone();
    let resource = resource(options);
    let tracer = match &options.export.traces {
        None => None,
        Some(target) => {
            let exporter = {
                let _entered = handle.enter();
                span_exporter(target)?
            };
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(OnRuntime {
                        inner: exporter,
                        handle: handle.clone(),
                    })
                    .with_resource(resource.clone())
                    .build(),
            )
        }
    };
    let meter = match &options.export.metrics {
        None => None,
        Some(target) => {
            let exporter = {
                let _entered = handle.enter();
                metric_exporter(target)?
            };
            Some(
                SdkMeterProvider::builder()
                    .with_periodic_exporter(OnRuntime {
                        inner: exporter,
                        handle: handle.clone(),
                    })
                    .with_resource(resource)
                    .build(),
            )
        }
    };
    if let Some(meter) = &meter {
        use opentelemetry::metrics::MeterProvider as _;
        let recorder = metrics_bridge::OtelRecorder::new(meter.meter("bff"));
        if !install_metrics(Some(recorder)).1 {
            tracing::warn!("a metrics recorder was installed before; metrics are not exported");
        }
    }
    if let Some(tracer) = &tracer {
        opentelemetry::global::set_tracer_provider(tracer.clone());
    }
    init_with(options, tracer.as_ref());
    Ok(Telemetry {
        tracer,
        meter,
        runtime: Some(runtime),
    })
}

/// Logging as `options` says, and spans recorded by `provider` (tests give
/// an in-memory exporter's provider). Returns `false` when a subscriber was
/// already installed.
pub fn init_with(options: &Options, provider: Option<&SdkTracerProvider>) -> bool {
    crate::trace_context::install_global_propagator();
    if provider.is_some() {
        crate::trace_context::set_recording();
    }
    let mut layers = vec![log_layer(
        options.log_format,
        &options.log_filter,
        options.log_to_stderr,
    )];
    layers.extend(provider.map(span_layer));
    Registry::default().with(layers).try_init().is_ok()
}

/// Logging only, as `filter` (RUST_LOG syntax) says. A second call is a
/// no-op, so tests may call it freely.
pub fn init_logging(format: LogFormat, filter: &str) {
    init_with(
        &Options {
            service_name: String::new(),
            service_version: String::new(),
            log_format: format,
            log_filter: filter.to_owned(),
            export: ExportConfig::default(),
            log_to_stderr: false,
        },
        None,
    );
}

fn span_exporter(target: &Target) -> Result<opentelemetry_otlp::SpanExporter, InitError> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match target.protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        Protocol::HttpProtobuf => builder.with_http().build(),
    }
    .map_err(|e| InitError::Exporter {
        signal: "traces",
        message: e.to_string(),
    })
}

fn metric_exporter(target: &Target) -> Result<opentelemetry_otlp::MetricExporter, InitError> {
    let builder = opentelemetry_otlp::MetricExporter::builder();
    match target.protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        Protocol::HttpProtobuf => builder.with_http().build(),
    }
    .map_err(|e| InitError::Exporter {
        signal: "metrics",
        message: e.to_string(),
    })
}

impl Telemetry {
    /// Exports what is buffered and stops exporting. Blocks (at most a few
    /// seconds when the collector does not answer): call it after the
    /// server's runtime has stopped, or off it.
    pub fn shutdown(mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("telemetry: flushing spans at exit failed: {error}");
        }
        if let Some(meter) = self.meter.take()
            && let Err(error) = meter.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("telemetry: flushing metrics at exit failed: {error}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one panics; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
