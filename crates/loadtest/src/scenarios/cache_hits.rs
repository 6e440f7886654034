//! Scenario 5: the dashboard with its fragments fresh for a minute, against
//! the same BFF without, and one hit on each tier of the store.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        data,
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
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    // The same BFF with the dashboard's fragments fresh for a minute:
    // after the first request every section is a local-tier hit.
    let mut env = bff_env(CACHED_MOBILE_PORT);
    for kind in ["USER", "ORDERS", "RECOMMENDATIONS"] {
        env.push((format!("BFF_CACHE_{kind}_FRESH"), "60s".into()));
    }
    let cached = Proc::spawn(
        "bff-mobile (cached)",
        &bin.join("bff-mobile"),
        &[],
        &env,
        plan.bff_cpu,
    )?;
    wait_http(CACHED_MOBILE_PORT, "/readyz", "bff-mobile (cached)").await?;
    let cached_dashboard = Arc::new(vec![
        Target::get(addr(CACHED_MOBILE_PORT), "/v1/dashboard")
            .header("authorization", &format!("Bearer {user_token}")),
    ]);
    for (target, proc, targets) in [
        ("bff-mobile, no fresh caching", m, &*dashboard),
        (
            "bff-mobile, fragments fresh 60 s",
            &cached,
            &cached_dashboard,
        ),
    ] {
        let (s, cpu) = closed(Some(proc), targets, connections, duration).await?;
        rows.push(row(
            "5 cache hits",
            target,
            format!("closed ×{connections}"),
            &s,
            cpu,
            "",
        ));
        let (s, cpu) = open(Some(proc), targets, rate, duration).await?;
        rows.push(row(
            "5 cache hits",
            target,
            format!("open {rate}/s"),
            &s,
            cpu,
            "",
        ));
    }
    notes.push(match tiers::hit_latency(data, 2001).await? {
            Some(t) => format!(
                "Scenario 5, one fragment hit on the store itself ({} user profiles): local tier p50 {:.1} µs, p99 {:.1} µs; shared tier (Redis on localhost, then filling the local tier) p50 {:.1} µs, p99 {:.1} µs.",
                t.reads, t.local_us.0, t.local_us.1, t.shared_us.0, t.shared_us.1
            ),
            None => "Scenario 5: no redis-server on the PATH, so shared-tier hit latency was not measured.".to_owned(),
        });
    Ok(())
}
