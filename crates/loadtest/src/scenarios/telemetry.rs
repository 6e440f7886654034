//! Scenario 8: what telemetry costs (export and sampling), alternately in one
//! run.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        user_token,
        mobile,
        dashboard,
        rows,
        notes,
        ..
    } = b;
    let Some(m) = mobile.as_ref() else {
        return Ok(());
    };
    notes.push(telemetry_cost(m, bin, plan, dashboard, user_token, args, rows).await?);
    Ok(())
}

/// Scenario 8: the same dashboard on the same binary with OTLP export off
/// (no endpoint: W3C propagation only), on for every trace, and on for 10%
/// of traces (spans and metrics to a local receiver, the SDK's default
/// batching), alternated twice so drift hits all alike.
async fn telemetry_cost(
    off: &Proc,
    bin: &std::path::Path,
    plan: &Plan,
    dashboard: &Arc<Vec<Target>>,
    user_token: &str,
    args: &Args,
    rows: &mut Vec<Row>,
) -> Result<String, String> {
    let (sink, received) = crate::otlp_sink::start().await?;
    let exporting =
        |port: u16, sampled: Option<&str>| -> Result<(Proc, Arc<Vec<Target>>), String> {
            let mut env = bff_env(port);
            env.extend([
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    format!("http://{sink}"),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
                ("OTEL_METRIC_EXPORT_INTERVAL".into(), "5000".into()),
            ]);
            if let Some(ratio) = sampled {
                env.push((
                    "OTEL_TRACES_SAMPLER".into(),
                    "parentbased_traceidratio".into(),
                ));
                env.push(("OTEL_TRACES_SAMPLER_ARG".into(), ratio.into()));
            }
            let proc = Proc::spawn(
                "bff-mobile (OTLP export)",
                &bin.join("bff-mobile"),
                &[],
                &env,
                plan.bff_cpu,
            )?;
            let targets = Arc::new(vec![
                Target::get(addr(port), "/v1/dashboard")
                    .header("authorization", &format!("Bearer {user_token}")),
            ]);
            Ok((proc, targets))
        };
    let (on, all_traced) = exporting(EXPORTING_MOBILE_PORT, None)?;
    let (sampled, tenth_traced) = exporting(SAMPLED_MOBILE_PORT, Some("0.1"))?;
    wait_http(EXPORTING_MOBILE_PORT, "/readyz", "bff-mobile (OTLP export)").await?;
    wait_http(
        SAMPLED_MOBILE_PORT,
        "/readyz",
        "bff-mobile (OTLP export, sampled)",
    )
    .await?;
    let cpu = alternate(
        "8 telemetry",
        &[
            ("bff-mobile, export off", off, dashboard),
            ("bff-mobile, OTLP export on, every trace", &on, &all_traced),
            (
                "bff-mobile, OTLP export on, 10% of traces",
                &sampled,
                &tenth_traced,
            ),
        ],
        2,
        args,
        rows,
    )
    .await?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    use std::sync::atomic::Ordering::Relaxed;
    Ok(format!(
        "Scenario 8: CPU per request with OTLP export ÷ without: every trace closed {:.2}× ({:.0} vs {:.0} µs), open {:.2}× ({:.0} vs {:.0} µs); 10% of traces closed {:.2}× ({:.0} µs), open {:.2}× ({:.0} µs); the receiver got {} span and {} metric exports, {:.1} MB.",
        mean(&cpu[1].0) / mean(&cpu[0].0).max(1e-9),
        mean(&cpu[1].0),
        mean(&cpu[0].0),
        mean(&cpu[1].1) / mean(&cpu[0].1).max(1e-9),
        mean(&cpu[1].1),
        mean(&cpu[0].1),
        mean(&cpu[2].0) / mean(&cpu[0].0).max(1e-9),
        mean(&cpu[2].0),
        mean(&cpu[2].1) / mean(&cpu[0].1).max(1e-9),
        mean(&cpu[2].1),
        received.trace_requests.load(Relaxed),
        received.metric_requests.load(Relaxed),
        received.bytes.load(Relaxed) as f64 / 1e6,
    ))
}
