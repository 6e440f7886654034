//! Scenario 11: overload. bff-mobile on one CPU over the static upstreams,
//! its capacity measured first (closed loop), then offered 1.5× and 2× that
//! open loop, and 3,000/s beside the I/O floor: how much it still serves,
//! how fast it answers what it serves and what it refuses, how much memory
//! it holds. With `--compare-with`, the other binary is measured the same
//! way in the same run, alternately.
//!
//! Each request is a different user's dashboard (`--overload-users` of
//! them, in turn) with the dashboard's fragments never fresh
//! (`BFF_CACHE_{KIND}_FRESH=0s`, `_REVALIDATE=0s`): every dashboard makes
//! its three upstream calls, as a replica's dashboards do when its users
//! are many and each comes back less often than the fragments stay fresh.
//! With the shipped windows and one user (scenario 10), the fragment cache
//! answers nearly everything and no rate this generator reaches overloads
//! the BFF.

use std::fmt::Write as _;

use crate::bench::*;

/// The load levels past capacity, as multiples of it.
const OVERLOADS: [f64; 2] = [1.5, 2.0];

/// The rate at which the BFF's tail is held to the I/O floor's.
const FLOOR_RATE: f64 = 3000.0;

/// Closed-loop connections of the capacity measurement: the adaptive
/// limit's floor on one CPU, so that no request of it is refused. Over
/// more connections than the limit, refused clients ask again at once and
/// the refusals take CPU from the answers (a client honouring `Retry-After`
/// would not), which would understate the capacity; and 16 in flight keep
/// a CPU busy (each dashboard is ~200 µs of CPU against an upstream round
/// trip of ~0.5 ms).
const CAPACITY_CONNECTIONS: usize = 16;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        data,
        rows,
        notes,
        ..
    } = b;
    let users = args.overload_users.clamp(1, data.users().len());
    let mut recorded = Vec::with_capacity(users);
    let mut tokens = Vec::with_capacity(users);
    for user in &data.users()[..users] {
        let id = user.id;
        recorded.push(Arc::new(vec![
            Target::get(addr(DEMO_BASE + 1), format!("/users/{id}")),
            Target::get(addr(DEMO_BASE + 2), format!("/orders?user_id={id}&limit=5")),
            Target::get(
                addr(DEMO_BASE + 3),
                format!("/recommendations?user_id={id}&limit=3"),
            ),
        ]));
        tokens.push(
            token(&format!(
                "grant_type=password&username={}&password=demo-password&audience=bff-mobile",
                user.username
            ))
            .await?,
        );
    }
    let (_statics, statics) = Statics::start(bin, plan, &recorded, args).await?;
    let dashboards: load::Mix = Arc::new(
        tokens
            .iter()
            .map(|t| {
                Arc::new(vec![
                    Target::get(addr(OVERLOAD_MOBILE_PORT), "/v1/dashboard")
                        .header("authorization", &format!("Bearer {t}")),
                ])
            })
            .collect(),
    );

    let mut variants = vec![("this build", bin.join("bff-mobile"))];
    if let Some(other) = &args.compare_with {
        variants.push(("compared", other.clone()));
    }
    let scenario = "11 overload";
    let mut env = static_env(OVERLOAD_MOBILE_PORT);
    for kind in ["USER", "ORDERS", "RECOMMENDATIONS"] {
        env.push((format!("BFF_CACHE_{kind}_FRESH"), "0s".into()));
        env.push((format!("BFF_CACHE_{kind}_REVALIDATE"), "0s".into()));
    }
    for (name, binary) in &variants {
        let mobile = Proc::spawn(
            &format!("bff-mobile ({name}, overload)"),
            binary,
            &[],
            &env,
            plan.bff_cpu,
        )?;
        wait_http(OVERLOAD_MOBILE_PORT, "/readyz", "bff-mobile (overload)").await?;
        let target = format!("bff-mobile ({name})");
        let report = measure(&mobile, &dashboards, args, scenario, &target, rows).await?;
        notes.push(report);
    }

    // The I/O floor at the rate the BFF's tail is held to, for reference.
    let size = load::fetch(&dashboards[0][0]).await?.1.len();
    let first = statics.first().ok_or("no static upstreams")?;
    let (floor, floor_target) = start_floor(
        bin,
        plan,
        "io-floor (overload)",
        OVERLOAD_FLOOR_PORT,
        size,
        first,
    )
    .await?;
    let (stats, cpu) = open(Some(&floor), &floor_target, FLOOR_RATE, args.duration).await?;
    rows.push(row(
        scenario,
        "I/O floor (hyper, unparsed)",
        format!("open {FLOOR_RATE}/s"),
        &stats,
        cpu,
        "",
    ));
    notes.push(format!(
        "Scenario 11: the I/O floor at {FLOOR_RATE}/s: p99 {:.2} ms (the BFF's p99 at that rate is held to this + 5 ms)",
        stats.percentile_ms(0.99)
    ));
    Ok(())
}

/// Capacity, then each overload and the floor's rate, on one BFF; its rows
/// added, and a note with the figures against the targets returned.
async fn measure(
    mobile: &Proc,
    dashboards: &load::Mix,
    args: &Args,
    scenario: &str,
    target: &str,
    rows: &mut Vec<Row>,
) -> Result<String, String> {
    let connections = CAPACITY_CONNECTIONS;
    let duration = args.duration;
    let _ = load::closed_loop_mix(dashboards.clone(), connections, Duration::from_secs(1)).await;
    let before = mobile.cpu_time()?;
    let (capacity, peak) = peak_rss(
        mobile,
        load::closed_loop_mix(dashboards.clone(), connections, duration),
    )
    .await;
    let cpu = cpu_per_request(mobile.cpu_time()? - before, &capacity);
    let served = capacity.ok_per_sec();
    rows.push(row(
        scenario,
        target,
        format!("closed ×{connections}"),
        &capacity,
        cpu,
        &format!(
            "capacity {served:.0} 2xx/s; peak RSS {:.1} MiB",
            peak as f64 / 1024.0
        ),
    ));
    let mut note = format!("Scenario 11, {target}: capacity (closed ×{connections}) {served:.0}/s");
    let mut rates: Vec<(String, f64)> = OVERLOADS
        .iter()
        .map(|m| (format!("{m}×"), served * m))
        .collect();
    rates.push(("fixed".to_owned(), FLOOR_RATE));
    for (label, rate) in rates {
        let counters = Degradation::of(OVERLOAD_MOBILE_PORT).await?;
        let connections_before = static_connections().await?;
        let before = mobile.cpu_time()?;
        let (stats, peak) = peak_rss(
            mobile,
            load::open_loop_mix(dashboards.clone(), rate, duration, 4096),
        )
        .await;
        let cpu = cpu_per_request(mobile.cpu_time()? - before, &stats);
        let degraded = Degradation::of(OVERLOAD_MOBILE_PORT)
            .await?
            .since(&counters);
        let limit = in_flight_limit().await?;
        // Each fetch of the count is a connection of its own.
        let opened = (static_connections().await?)
            .saturating_sub(connections_before)
            .saturating_sub(3);
        // Every 2xx dashboard made three calls; every `keepalive`th call on
        // a connection closed it.
        let closes = stats.ok * 3 / u64::from(args.upstream_keepalive.max(1));
        let ok_share = stats.ok_per_sec() / served.max(1.0);
        let mut line = format!(
            "{label} ({rate:.0}/s): {:.0} 2xx/s ({:.0}% of capacity), p99 {:.2} ms",
            stats.ok_per_sec(),
            ok_share * 100.0,
            stats.percentile_ms(0.99),
        );
        if stats.refused > 0 {
            let _ = write!(
                line,
                ", {} refused (p50 {:.2}, p99 {:.2}, max {:.2} ms from due; p99 {:.2} ms from sent)",
                stats.refused,
                stats.refused_percentile_ms(0.5),
                stats.refused_percentile_ms(0.99),
                stats.refused_percentile_ms(1.0),
                stats.refused_service_ms(0.99),
            );
        }
        if degraded.answered_503 > 0 {
            let _ = write!(
                line,
                " ({:.1}% answered within 5 ms of the BFF reading them)",
                degraded.answered_503_within_5ms as f64 * 100.0 / degraded.answered_503 as f64
            );
        }
        let _ = write!(
            line,
            ", {} other errors, {} partial, {} calls shed, limit at the end {limit}, peak RSS {:.1} MiB, {opened} upstream connections opened for about {closes} closed",
            stats.errors - stats.refused + stats.dropped,
            degraded.partial,
            degraded.shed,
            peak as f64 / 1024.0
        );
        if stats.late > Duration::from_millis(5) {
            let _ = write!(
                line,
                "; arrivals sent up to {:.1} ms late",
                stats.late.as_secs_f64() * 1000.0
            );
        }
        rows.push(row(
            scenario,
            target,
            format!("open {rate:.0}/s ({label})"),
            &stats,
            cpu,
            &line,
        ));
        let _ = write!(note, "; {line}");
    }
    Ok(note)
}

/// The BFF's limit on requests in flight now (its gauge).
async fn in_flight_limit() -> Result<u64, String> {
    let metrics = Target::get(addr(OVERLOAD_MOBILE_PORT), "/metrics");
    let (_, body) = load::fetch(&metrics).await?;
    Ok(counter_total(
        &String::from_utf8_lossy(&body),
        "bff_server_in_flight_limit",
    ))
}
