//! Scenario 2: the dashboard over slow upstreams (`--upstream-latency`): the
//! aggregation's overhead over the slowest of three.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        mobile,
        dashboard,
        upstreams,
        rows,
        notes,
        ..
    } = b;
    let (duration, rate) = (args.duration, args.rate);
    let latency_ms = args.upstream_latency.as_millis();
    let name = format!("2 {latency_ms} ms upstreams");
    for s in ["user", "order", "recommendation"] {
        control(
            Method::PUT,
            &format!("/faults/{s}"),
            &format!(r#"{{"latency_ms": {latency_ms}}}"#),
        )
        .await?;
    }
    let (floor, _) = open(None, upstreams, rate, duration).await?;
    rows.push(row(
        &name,
        "upstreams alone (3 calls)",
        format!("open {rate}/s"),
        &floor,
        None,
        "the slowest of three",
    ));
    let (s, cpu) = open(mobile.as_ref(), dashboard, rate, duration).await?;
    let (d50, d99) = (
        s.percentile_ms(0.5) - floor.percentile_ms(0.5),
        s.percentile_ms(0.99) - floor.percentile_ms(0.99),
    );
    rows.push(row(
        &name,
        "bff-mobile",
        format!("open {rate}/s"),
        &s,
        cpu,
        &format!("overhead p50 {d50:+.2} ms, p99 {d99:+.2} ms"),
    ));
    notes.push(format!("Scenario 2: aggregation overhead over the slowest upstream: p50 {d50:+.2} ms, p99 {d99:+.2} ms (target p99 ≤ 1 ms)"));
    control(Method::DELETE, "/faults", "").await?;
    Ok(())
}
