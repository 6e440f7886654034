//! One product-page request, traced: the span tree an OpenTelemetry
//! exporter receives (request → sections → upstream calls over REST, gRPC
//! and GraphQL → the demo services' own server spans), all in the caller's
//! trace. The spans go to an in-memory exporter installed for this test
//! binary (its own process, so the global subscriber is this test's).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> String {
    attr(span, key).map(Value::to_string).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_page_is_one_trace_from_the_client_to_every_upstream() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    assert!(
        bff_telemetry::init_with(
            &bff_telemetry::Options {
                service_name: "bff-web".into(),
                service_version: "test".into(),
                log_format: bff_telemetry::LogFormat::Pretty,
                log_filter: "warn".into(),
                export: bff_telemetry::ExportConfig::default(),
                log_to_stderr: false,
            },
            Some(&provider),
        ),
        "this test installs the process's subscriber"
    );

    let stack = testkit::start_demo().await;
    let config = testkit::bff_config_with(
        &stack,
        bff_web::SPEC,
        &[
            ("BFF_CACHE_PRODUCT_FRESH", "60s"),
            ("BFF_CACHE_PRICE_FRESH", "60s"),
            ("BFF_CACHE_REVIEWS_FRESH", "60s"),
            ("BFF_CACHE_STOCK_FRESH", "60s"),
        ],
    );
    let server = testkit::start_bff(config, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0002", "bff-web", None);
    let product = stack.data().products()[5].id;
    let path = format!("/v1/products/{product}");
    exporter.reset();

    let response = reqwest::Client::new()
        .get(server.url(&path))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("baggage", "tenant=acme")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["metadata"]["partialFailures"], 0, "{body}");

    // Spans end as their work ends; the request span last but one (the
    // response is written first). Wait for the tree to be complete.
    let deadline = Instant::now() + Duration::from_secs(5);
    let spans = loop {
        let spans = exporter.get_finished_spans().expect("spans");
        let requests = spans
            .iter()
            .filter(|s| s.name.starts_with("GET /v1/products"))
            .count();
        let servers = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server && attr(s, "demo.service").is_some())
            .count();
        if requests == 1 && servers >= 4 {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the trace did not complete: {:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();

    // Every span of this request is in the caller's trace.
    for span in &spans {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            TRACE_ID,
            "{} is in another trace",
            span.name
        );
    }

    // The request: a server span continuing the caller's span.
    let request = spans
        .iter()
        .find(|s| s.name == "GET /v1/products/{product_id}")
        .unwrap_or_else(|| {
            panic!(
                "the request span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(request.parent_span_id.to_string(), CALLER_SPAN);
    assert_eq!(attr_str(request, "http.route"), "/v1/products/{product_id}");
    assert_eq!(attr_str(request, "http.request.method"), "GET");
    assert_eq!(attr_str(request, "bff.client"), "bff-web");
    assert_eq!(
        attr(request, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    let pseudonym = attr_str(request, "enduser.pseudo.id");
    assert_eq!(
        pseudonym.len(),
        16,
        "a pseudonym of the subject: {pseudonym:?}"
    );
    let user = stack.data().users()[1].id.to_string();
    assert!(
        spans.iter().all(|s| s
            .attributes
            .iter()
            .all(|kv| !kv.value.to_string().contains(&user))),
        "the user's id appears in no span"
    );

    // Sections: children of the request, with criticality and outcome.
    let sections: HashMap<String, &SpanData> = spans
        .iter()
        .filter(|s| attr(s, "bff.section").is_some())
        .map(|s| {
            (
                attr_str(s, "bff.section"),
                *by_id.get(&s.span_context.span_id()).expect("known"),
            )
        })
        .collect();
    for (name, criticality) in [
        ("product", "critical"),
        ("pricing", "optional"),
        ("reviews", "optional"),
        ("inventory", "optional"),
    ] {
        let section = sections
            .get(name)
            .unwrap_or_else(|| panic!("section {name}"));
        assert_eq!(
            section.parent_span_id,
            request.span_context.span_id(),
            "section {name} is a child of the request"
        );
        assert_eq!(attr_str(section, "bff.section.criticality"), criticality);
        assert_eq!(attr_str(section, "bff.section.outcome"), "ok", "{name}");
        assert_eq!(
            attr_str(section, "bff.cache.result"),
            "miss",
            "{name}: a cold cache"
        );
    }

    // Upstream calls: client spans under their section, one per protocol.
    let calls: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    let section_of = |call: &SpanData| -> String {
        by_id
            .get(&call.parent_span_id)
            .map(|p| attr_str(p, "bff.section"))
            .unwrap_or_default()
    };
    let call = |protocol: &str| -> &SpanData {
        calls
            .iter()
            .copied()
            .find(|c| attr_str(c, "protocol") == protocol)
            .unwrap_or_else(|| panic!("a {protocol} call among {calls:#?}"))
    };
    let grpc = call("grpc");
    assert_eq!(attr_str(grpc, "rpc.system.name"), "grpc");
    assert!(
        attr_str(grpc, "rpc.method").contains("Service/"),
        "{}",
        attr_str(grpc, "rpc.method")
    );
    assert_eq!(attr_str(grpc, "rpc.status_code"), "OK");
    assert!(["product", "inventory"].contains(&section_of(grpc).as_str()));
    let rest = call("rest");
    assert_eq!(section_of(rest), "reviews");
    assert_eq!(attr_str(rest, "http.request.method"), "GET");
    assert_eq!(
        attr(rest, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    let graphql = call("graphql");
    assert_eq!(section_of(graphql), "pricing");
    assert_eq!(attr_str(graphql, "http.request.method"), "POST");
    for c in &calls {
        assert_eq!(attr_str(c, "outcome"), "ok", "{}", c.name);
        assert_eq!(attr_str(c, "bff.circuit.state"), "closed", "{}", c.name);
        assert!(!matches!(c.status, Status::Error { .. }), "{}", c.name);
    }

    // Each demo service continued the trace under the call that reached it.
    let mut services = Vec::new();
    for server_span in spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server && attr(s, "demo.service").is_some())
    {
        let parent = by_id
            .get(&server_span.parent_span_id)
            .unwrap_or_else(|| panic!("{} has a parent in the trace", server_span.name));
        assert_eq!(
            parent.span_kind,
            SpanKind::Client,
            "{} is the child of an upstream call",
            server_span.name
        );
        services.push(attr_str(server_span, "demo.service"));
    }
    services.sort();
    services.dedup();
    assert_eq!(services, ["inventory", "pricing", "product", "review"]);

    // Again: every section is a cache hit, and no upstream is called.
    exporter.reset();
    let again = reqwest::Client::new()
        .get(server.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let spans = loop {
        let spans = exporter.get_finished_spans().expect("spans");
        if spans.iter().any(|s| s.span_kind == SpanKind::Server) {
            break spans;
        }
        assert!(Instant::now() < deadline, "no request span");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let request = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("request");
    assert_ne!(
        request.span_context.trace_id().to_string(),
        TRACE_ID,
        "a request without traceparent starts its own trace"
    );
    let results: Vec<String> = spans
        .iter()
        .filter(|s| attr(s, "bff.section").is_some())
        .map(|s| attr_str(s, "bff.cache.result"))
        .collect();
    assert_eq!(results, ["hit"; 4], "{results:?}");
    assert!(
        spans.iter().all(|s| s.span_kind != SpanKind::Client),
        "no upstream call on a warm cache"
    );

    // A caller that says "not sampled" is obeyed (parent-based sampling):
    // nothing of its trace is recorded, in the BFF or the services.
    exporter.reset();
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4736";
    let other = stack.data().products()[6].id;
    let r = reqwest::Client::new()
        .get(server.url(&format!("/v1/products/{other}")))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{unsampled}-{CALLER_SPAN}-00"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recorded = exporter.get_finished_spans().expect("spans");
    assert!(
        recorded
            .iter()
            .all(|s| s.span_context.trace_id().to_string() != unsampled),
        "{:?}",
        recorded.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}
