//! `/metrics` after known traffic: the OpenTelemetry semantic conventions'
//! names and attributes in Prometheus form (unit suffixes, `_total`
//! counters), exact counts, and the gateway's buckets. One test in its own
//! binary: the recorder is process-wide, so the counts are this test's.

use std::collections::BTreeMap;

/// One series: name and labels, parsed (label order does not matter).
type Series = (String, BTreeMap<String, String>);

fn parse(text: &str) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.push(((name.to_owned(), labels), value.parse().expect("a number")));
    }
    out
}

/// The value of the series `name` whose labels include all of `labels`.
fn value(all: &[(Series, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = all
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_with_semantic_convention_names() {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config_with(
        &stack,
        bff_web::SPEC,
        &[
            // Every request calls every upstream: the counts are exact.
            ("BFF_CACHE_PRODUCT_FRESH", "0s"),
            ("BFF_CACHE_PRICE_FRESH", "0s"),
            ("BFF_CACHE_REVIEWS_FRESH", "0s"),
            ("BFF_CACHE_STOCK_FRESH", "0s"),
            ("BFF_UPSTREAM_ALL_COALESCE", "false"),
        ],
    );
    let server = testkit::start_bff(config, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0003", "bff-web", None);
    let product = stack.data().products()[7].id;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let r = client
            .get(server.url(&format!("/v1/products/{product}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    for auth in [None, None, Some("Bearer not.a-token")] {
        let mut request = client.get(server.url(&format!("/v1/products/{product}")));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        assert_eq!(request.send().await.expect("request").status(), 401);
    }
    let text = server.get_text("/metrics").await;
    let all = parse(&text);
    let route = ("http_route", "/v1/products/{product_id}");

    // The server histogram, by route, method and status.
    for (status, count) in [("200", 4.0), ("401", 3.0)] {
        assert_eq!(
            value(
                &all,
                "http_server_request_duration_seconds_count",
                &[
                    route,
                    ("http_request_method", "GET"),
                    ("http_response_status_code", status)
                ]
            ),
            Some(count),
            "{status}"
        );
    }
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    // Semconv boundaries (5 ms … 10 s) plus the gateway's sub-5 ms ones.
    for le in [
        "0.0001", "0.00025", "0.001", "0.005", "0.075", "0.75", "7.5", "10", "+Inf",
    ] {
        assert!(
            value(
                &all,
                "http_server_request_duration_seconds_bucket",
                &[route, ("http_response_status_code", "200"), ("le", le)]
            )
            .is_some(),
            "bucket le={le}"
        );
    }
    assert_eq!(
        value(
            &all,
            "http_server_request_duration_seconds_bucket",
            &[route, ("http_response_status_code", "200"), ("le", "+Inf")]
        ),
        Some(4.0)
    );

    // Upstream calls: gRPC as RPCs, REST and GraphQL as HTTP client calls.
    for method in [
        "catalog.v1.ProductService/BatchGetProducts",
        "inventory.v1.InventoryService/BatchGetStock",
    ] {
        assert_eq!(
            value(
                &all,
                "rpc_client_call_duration_seconds_count",
                &[
                    ("rpc_system_name", "grpc"),
                    ("rpc_method", method),
                    ("rpc_status_code", "OK"),
                    ("outcome", "ok"),
                ]
            ),
            Some(4.0),
            "{method}"
        );
    }
    assert_eq!(
        value(
            &all,
            "http_client_request_duration_seconds_count",
            &[
                ("upstream", "review"),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
            ]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &all,
            "http_client_request_duration_seconds_count",
            &[("upstream", "pricing"), ("http_request_method", "POST")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &all,
            "http_client_request_duration_seconds_count",
            &[("upstream", "product")]
        ),
        None,
        "gRPC calls are not counted as HTTP ones"
    );

    // Token rejections by reason; counters end in _total.
    assert_eq!(
        value(&all, "bff_auth_rejected_total", &[("reason", "missing")]),
        Some(2.0)
    );
    assert_eq!(
        value(&all, "bff_auth_rejected_total", &[("reason", "malformed")]),
        Some(1.0)
    );
    assert!(text.contains("# TYPE bff_auth_rejected_total counter"));

    // Gauges: circuits closed, bulkheads idle, this scrape's connection and
    // request live.
    for upstream in ["product", "pricing", "review", "inventory"] {
        assert_eq!(
            value(
                &all,
                "bff_upstream_circuit_state",
                &[("upstream", upstream)]
            ),
            Some(0.0),
            "{upstream}"
        );
        assert_eq!(
            value(
                &all,
                "bff_upstream_bulkhead_saturation",
                &[("upstream", upstream)]
            ),
            Some(0.0),
            "{upstream}"
        );
    }
    assert_eq!(value(&all, "http_server_active_requests", &[]), Some(1.0));
    let connections = value(&all, "bff_server_connections", &[]).expect("connections");
    assert!((1.0..=3.0).contains(&connections), "{connections}");
    // The limit on requests in flight, between its floor and its ceiling
    // (the defaults: 32 and 256 per CPU); the pages' and live streams'
    // classes each have their gauge.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let bound = value(&all, "bff_server_in_flight_limit", &[]).expect("in-flight limit");
    assert!((32.0 * cpus..=256.0 * cpus).contains(&bound), "{bound}");
    for class in ["pages", "live"] {
        assert!(
            value(&all, "bff_server_in_flight", &[("class", class)]).is_some(),
            "{class}"
        );
    }

    // Every series is in the catalogue dashboards are checked against.
    let catalogue: Vec<String> = bff_telemetry::names::CATALOGUE
        .iter()
        .map(|(name, kind, unit, _)| bff_telemetry::names::prometheus_name(name, *kind, *unit))
        .collect();
    for ((name, _), _) in &all {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| catalogue.iter().any(|c| c == base))
            .unwrap_or(name);
        assert!(
            catalogue.iter().any(|c| c == base),
            "{name} is not in the catalogue"
        );
    }
}
