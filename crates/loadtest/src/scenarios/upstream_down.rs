//! Scenario 6: one upstream down: the circuit opens and answers at once.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        mobile,
        dashboard,
        rows,
        ..
    } = b;
    let (duration, rate) = (args.duration, args.rate);
    control(
        Method::PUT,
        "/faults/recommendation",
        r#"{"error_rate": 1}"#,
    )
    .await?;
    for _ in 0..10 {
        let _ = load::fetch(&dashboard[0]).await;
    }
    let (_, body) = load::fetch(&dashboard[0]).await?;
    let open_circuit = String::from_utf8_lossy(&body).contains("circuit_open");
    let (s, cpu) = open(mobile.as_ref(), dashboard, rate, duration).await?;
    let (_, metrics) = load::fetch(&Target::get(addr(MOBILE_PORT), "/metrics")).await?;
    let fail_fast = open_circuit_p99(&String::from_utf8_lossy(&metrics), "recommendation");
    let note = match (open_circuit, fail_fast) {
        (true, Some(p99)) => format!(
            "recommendations: circuit_open, answered by the open circuit in ≤ {} ms (p99 bucket)",
            p99 * 1000.0
        ),
        (true, None) => "recommendations: circuit_open".to_owned(),
        (false, _) => "circuit did NOT open".to_owned(),
    };
    rows.push(row(
        "6 one upstream down",
        "bff-mobile",
        format!("open {rate}/s"),
        &s,
        cpu,
        &note,
    ));
    control(Method::DELETE, "/faults", "").await?;
    Ok(())
}

/// The upper bound (seconds) of the histogram bucket that holds the 99th
/// percentile of `upstream`'s calls refused by an open circuit, read from a
/// BFF's Prometheus text.
fn open_circuit_p99(metrics: &str, upstream: &str) -> Option<f64> {
    let wanted = |line: &str| {
        line.contains(&format!("upstream=\"{upstream}\""))
            && line.contains("outcome=\"circuit_open\"")
    };
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("http_client_request_duration_seconds_bucket{") else {
            continue;
        };
        if !wanted(rest) {
            continue;
        }
        let le = rest.split("le=\"").nth(1)?.split('"').next()?;
        let count: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        if let Ok(le) = le.parse::<f64>() {
            buckets.push((le, count));
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, n)| *n >= total * 0.99)
        .map(|(le, _)| *le)
}
