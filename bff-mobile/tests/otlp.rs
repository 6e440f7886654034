//! The `bff-mobile` binary exporting over OTLP, to a receiver started by
//! the test, over HTTP/protobuf and over gRPC: spans and metrics arrive with
//! the configured service name and resource attributes, and what is still
//! buffered at SIGTERM is flushed before the process exits.

use demo_services::ServiceName;
use testkit::BffProcess;
use testkit::otlp::{OtlpReceiver, Transport, attribute};

const UPSTREAMS: [ServiceName; 3] = [
    ServiceName::User,
    ServiceName::Order,
    ServiceName::Recommendation,
];
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_receiver_over_http_and_grpc() {
    let stack = testkit::start_demo().await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    for (protocol, transport) in [
        ("http/protobuf", Transport::Http),
        ("grpc", Transport::Grpc),
    ] {
        let receiver = OtlpReceiver::start().await;
        let service = format!("mobile-over-{}", protocol.replace('/', "-"));
        let endpoint = receiver.endpoint();
        let bff = BffProcess::start(
            env!("CARGO_BIN_EXE_bff-mobile"),
            &stack,
            &UPSTREAMS,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_SERVICE_NAME", &service),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment.name=test",
                ),
                // Long enough that only the flush at exit delivers metrics.
                ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
                ("RUST_LOG", "warn"),
            ],
        )
        .await;
        let client = reqwest::Client::new();
        for i in 0..3 {
            let response = client
                .get(bff.url("/v1/dashboard"))
                .bearer_auth(&token)
                .header(
                    "traceparent",
                    format!("00-{TRACE_ID}-00f067aa0ba9020{i}-01"),
                )
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
        }
        let (code, _) = bff.stop().await;
        assert_eq!(code, Some(0), "{protocol}: exits 0");

        // Spans: flushed at exit at the latest.
        let spans = receiver.spans();
        assert!(!spans.is_empty(), "{protocol}: no spans arrived");
        let mut names = Vec::new();
        for (arrived_on, resource_spans) in &spans {
            assert_eq!(*arrived_on, transport, "{protocol}");
            let resource = resource_spans.resource.as_ref().expect("a resource");
            assert_eq!(
                attribute(&resource.attributes, "service.name"),
                Some(service.as_str())
            );
            assert_eq!(
                attribute(&resource.attributes, "deployment.environment.name"),
                Some("test")
            );
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    if span.name == "jwks jwks" {
                        // Background key fetches are traces of their own.
                        assert!(span.parent_span_id.is_empty(), "{protocol}: a root span");
                        continue;
                    }
                    assert_eq!(
                        span.trace_id
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>(),
                        TRACE_ID,
                        "{protocol}: {} continues the caller's trace",
                        span.name
                    );
                    names.push(span.name.clone());
                }
            }
        }
        let requests = names.iter().filter(|n| *n == "GET /v1/dashboard").count();
        assert_eq!(requests, 3, "{protocol}: {names:?}");
        for call in ["user get_user", "order list_orders"] {
            assert!(
                names.iter().any(|n| n.starts_with(call)),
                "{protocol}: a {call} span among {names:?}"
            );
        }

        // Metrics: the server histogram with the semantic conventions'
        // attributes and this project's buckets.
        let metrics = receiver.metrics();
        assert!(!metrics.is_empty(), "{protocol}: no metrics arrived");
        let all: Vec<_> = metrics
            .iter()
            .flat_map(|(_, rm)| rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
            .collect();
        let server = all
            .iter()
            .find(|m| m.name == "http.server.request.duration")
            .unwrap_or_else(|| {
                panic!(
                    "{protocol}: {:?}",
                    all.iter().map(|m| &m.name).collect::<Vec<_>>()
                )
            });
        assert_eq!(server.unit, "s");
        let Some(testkit::otlp::metric::Data::Histogram(histogram)) = &server.data else {
            panic!("{protocol}: a histogram");
        };
        let dashboard = histogram
            .data_points
            .iter()
            .find(|p| attribute(&p.attributes, "http.route") == Some("/v1/dashboard"))
            .expect("a /v1/dashboard data point");
        assert_eq!(dashboard.count, 3);
        assert_eq!(
            attribute(&dashboard.attributes, "http.request.method"),
            Some("GET")
        );
        assert_eq!(
            attribute(&dashboard.attributes, "http.response.status_code"),
            Some("200")
        );
        assert_eq!(
            dashboard.explicit_bounds.first().copied(),
            Some(0.0001),
            "sub-millisecond buckets"
        );
        assert!(
            all.iter().any(|m| m.name == "http.client.request.duration"),
            "{protocol}: upstream calls measured"
        );
    }
}
