//! Scenario 10: the dashboard against static upstream stand-ins, bff-mobile
//! and the I/O floor side by side.

use std::fmt::Write as _;

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        user_token,
        upstreams,
        rows,
        notes,
        ..
    } = b;
    notes.extend(static_upstreams(bin, plan, user_token, upstreams, args, rows).await?);
    Ok(())
}

/// Scenario 10: the mobile dashboard against static upstream stand-ins
/// (`static-upstream`: the demo world's recorded bodies, connections closed
/// after `--upstream-keepalive` requests like nginx's), bff-mobile and the
/// I/O floor side by side, closed loop over `--static-connections` and open
/// loop at `--rate`. Coalescing is off so that bff-mobile makes every call
/// the floor makes: no figure here depends on the demo services' behaviour
/// or on many clients asking for one user at once.
async fn static_upstreams(
    bin: &Path,
    plan: &Plan,
    user_token: &str,
    upstreams: &Arc<Vec<Target>>,
    args: &Args,
    rows: &mut Vec<Row>,
) -> Result<Vec<String>, String> {
    let (duration, rate, connections) = (args.duration, args.rate, args.static_connections);
    let (_static, mut recorded) =
        Statics::start(bin, plan, std::slice::from_ref(upstreams), args).await?;
    let statics = recorded.pop().ok_or("no static upstreams")?;

    let env = static_env(STATIC_MOBILE_PORT);
    let mobile = Proc::spawn(
        "bff-mobile (static upstreams)",
        &bin.join("bff-mobile"),
        &[],
        &env,
        plan.bff_cpu,
    )?;
    wait_http(
        STATIC_MOBILE_PORT,
        "/readyz",
        "bff-mobile (static upstreams)",
    )
    .await?;
    let dashboard = Arc::new(vec![
        Target::get(addr(STATIC_MOBILE_PORT), "/v1/dashboard")
            .header("authorization", &format!("Bearer {user_token}")),
    ]);
    let size = load::fetch(&dashboard[0]).await?.1.len();
    let (floor, floor_target) = start_floor(
        bin,
        plan,
        "io-floor (static upstreams)",
        STATIC_FLOOR_PORT,
        size,
        &statics,
    )
    .await?;

    let scenario = "10 static upstreams";
    let keepalive = args.upstream_keepalive;
    let (s, _) = closed(None, &statics, connections, duration).await?;
    rows.push(row(
        scenario,
        "upstreams alone (3 calls)",
        format!("closed ×{connections}"),
        &s,
        None,
        &format!("close after {keepalive} requests per connection"),
    ));
    let mut cpu = [[None; 2]; 2];
    let mut rss = [[0u64; 2]; 2];
    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let profile = |proc: &Proc, file: &str, title: String| {
        args.perf
            .as_ref()
            .map(|dir| procs::Profile::start(proc.pid(), &dir.join(file), &title))
            .transpose()
    };
    for (i, (name, file, proc, target, metrics)) in [
        (
            "bff-mobile",
            "bff-mobile",
            &mobile,
            &dashboard,
            Some(STATIC_MOBILE_PORT),
        ),
        (
            "I/O floor (hyper, unparsed)",
            "io-floor",
            &floor,
            &floor_target,
            None,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let recording = profile(
            proc,
            &format!("{file}-closed-{connections}.svg"),
            format!("{name}, static upstreams, closed loop x{connections}"),
        )?;
        let (result, peak) =
            peak_rss(proc, closed(Some(proc), target, connections, duration)).await;
        recording.map(procs::Profile::finish).transpose()?;
        let (stats, c) = result?;
        (cpu[i][0], rss[i][0]) = (c, peak);
        rows.push(row(
            scenario,
            name,
            format!("closed ×{connections}"),
            &stats,
            c,
            &format!("peak RSS {:.1} MiB", peak as f64 / 1024.0),
        ));
        let recording = profile(
            proc,
            &format!("{file}-open-{rate}.svg"),
            format!("{name}, static upstreams, open loop {rate}/s"),
        )?;
        let before = match metrics {
            Some(port) => Some(Degradation::of(port).await?),
            None => None,
        };
        let (result, peak) = peak_rss(proc, open(Some(proc), target, rate, duration)).await;
        recording.map(procs::Profile::finish).transpose()?;
        let (stats, c) = result?;
        (cpu[i][1], rss[i][1]) = (c, peak);
        let mut note = format!("peak RSS {:.1} MiB", peak as f64 / 1024.0);
        if let (Some(port), Some(before)) = (metrics, before) {
            let during = Degradation::of(port).await?.since(&before);
            let _ = write!(
                note,
                "; {} partial responses, {} upstream calls shed",
                during.partial, during.shed
            );
        }
        if stats.late > Duration::from_millis(5) {
            let _ = write!(
                note,
                "; arrivals sent up to {:.1} ms late",
                stats.late.as_secs_f64() * 1000.0
            );
        }
        if !stats.stalled.is_empty() {
            let _ = write!(
                note,
                "; stalled {} ms (answers over {} ms in {} windows of {} ms)",
                stats.stalled_for().as_millis(),
                load::STALL_LATENCY.as_millis(),
                stats.stalled.len(),
                load::STALL_WINDOW.as_millis(),
            );
        }
        rows.push(row(
            scenario,
            name,
            format!("open {rate}/s"),
            &stats,
            c,
            &note,
        ));
    }
    let mut notes = Vec::new();
    for (j, load) in [format!("closed ×{connections}"), format!("open {rate}/s")]
        .iter()
        .enumerate()
    {
        if let (Some(b), Some(f)) = (cpu[0][j], cpu[1][j]) {
            notes.push(format!(
                "Scenario 10 ({load}, static upstreams): CPU per request, bff-mobile ÷ I/O floor = {:.2}× ({b:.0} vs {f:.0} µs; target ≤ 1.5×); peak RSS {:.1} vs {:.1} MiB",
                b / f,
                rss[0][j] as f64 / 1024.0,
                rss[1][j] as f64 / 1024.0,
            ));
        }
    }
    Ok(notes)
}
