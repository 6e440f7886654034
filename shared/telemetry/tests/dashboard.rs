//! The provisioned Grafana dashboard queries only series the project
//! exports, under their Prometheus names, and covers what an operator
//! needs on one screen.

use std::collections::BTreeSet;
use std::path::PathBuf;

use bff_telemetry::names::{self, CATALOGUE, Kind};

fn observability() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Metric names in a PromQL expression: identifiers followed by a selector
/// (`{`) or given to `label_values(`.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let followed_by_selector = bytes.get(i) == Some(&b'{');
            let in_label_values = expr[..start].trim_end().ends_with("label_values(");
            if followed_by_selector || in_label_values {
                found.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_dashboard_queries_only_exported_series() {
    let exported: BTreeSet<String> = CATALOGUE
        .iter()
        .flat_map(|(name, kind, unit, _)| {
            let base = names::prometheus_name(name, *kind, *unit);
            match kind {
                Kind::Histogram => vec![
                    format!("{base}_bucket"),
                    format!("{base}_count"),
                    format!("{base}_sum"),
                ],
                _ => vec![base],
            }
        })
        .collect();
    let text = std::fs::read_to_string(observability().join("grafana/dashboards/bff.json"))
        .expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() > 20, "{} queries", all.len());
    let mut used = BTreeSet::new();
    for expr in &all {
        let metrics = metrics_in(expr);
        assert!(!metrics.is_empty(), "no metric in {expr}");
        for metric in metrics {
            assert!(
                exported.contains(&metric),
                "{metric} (in {expr}) is not exported"
            );
            used.insert(metric);
        }
    }
    for needed in [
        "http_server_request_duration_seconds_bucket",
        "http_client_request_duration_seconds_bucket",
        "rpc_client_call_duration_seconds_bucket",
        "bff_aggregate_partial_responses_total",
        "bff_aggregate_section_failures_total",
        "bff_upstream_circuit_state",
        "bff_upstream_bulkhead_saturation",
        "bff_cache_lookups_total",
        "bff_ratelimit_limited_total",
        "bff_auth_rejected_total",
        "bff_server_connections",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    for quantile in ["0.5", "0.95", "0.99"] {
        assert!(
            all.iter()
                .any(|e| e.contains(&format!("histogram_quantile({quantile},"))),
            "p{quantile}"
        );
    }
    // Panels reach the datasource Grafana is provisioned with.
    let datasources = std::fs::read_to_string(
        observability().join("grafana/provisioning/datasources/datasources.yaml"),
    )
    .expect("datasources");
    assert!(datasources.contains("uid: prometheus"));
    assert!(text.contains(r#""uid": "prometheus""#));
    let ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "panel ids are unique"
    );
}

#[test]
fn prometheus_scrapes_each_bff_on_its_port() {
    let config = std::fs::read_to_string(observability().join("prometheus.yml")).expect("config");
    for (job, port) in [
        ("bff-mobile", 8081),
        ("bff-web", 8082),
        ("bff-partner", 8083),
    ] {
        assert!(config.contains(&format!("job_name: {job}")), "{job}");
        assert!(config.contains(&port.to_string()), "{job} on {port}");
    }
    let collector =
        std::fs::read_to_string(observability().join("otel-collector.yaml")).expect("collector");
    for needed in ["0.0.0.0:4317", "0.0.0.0:4318", "otlp/jaeger", "prometheus:"] {
        assert!(collector.contains(needed), "{needed}");
    }
}
