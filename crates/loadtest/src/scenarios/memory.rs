//! Scenario 7: bff-mobile's memory, idle and under 256 connections.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        mobile,
        mobile_idle_rss,
        dashboard,
        rows,
        notes,
        ..
    } = b;
    let Some(m) = mobile.as_ref() else {
        return Ok(());
    };
    let duration = args.duration;
    let rss_before = mobile_idle_rss.unwrap_or(0);
    let load = tokio::spawn(load::closed_loop(dashboard.clone(), 256, duration));
    let mut peak = 0;
    while !load.is_finished() {
        peak = peak.max(m.rss_kib().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = load.await.map_err(|e| e.to_string())?;
    rows.push(row(
        "7 memory",
        "bff-mobile",
        "closed ×256".into(),
        &s,
        None,
        &format!(
            "RSS idle {:.1} MiB, peak under load {:.1} MiB",
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
    ));
    notes.push(format!(
            "Scenario 7: RSS idle {:.1} MiB (target ≤ 20), under 256 connections {:.1} MiB (target ≤ 64)",
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0
        ));
    Ok(())
}
