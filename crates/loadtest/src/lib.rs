//! The benchmark harness.
//!
//! Builds the binaries, starts the demo services and the BFFs as separate
//! processes (the BFF pinned to its own CPU when `taskset` and a second CPU
//! are there), drives load from this process, and prints one table. The
//! figure that compares implementations fairly on a small machine is the
//! BFF's **CPU time per request**, read from the kernel's accounting of the
//! BFF process at a fixed rate below saturation: the load generator and the
//! upstreams share the other CPU and cap raw throughput.
//!
//! Baselines come from the same run: the upstreams alone (the floor), and,
//! when Node.js is installed, an equivalent Fastify BFF (`node-baseline/`).

mod bench;
pub mod load;
pub mod otlp_sink;
pub mod procs;
mod scenarios;
pub mod tiers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use demo_services::DemoData;
use demo_services::data::DEFAULT_SEED;

pub use bench::Row;
use bench::{
    Bench, DEMO_BASE, MOBILE_PORT, Plan, addr, bff_env, plan, ports_free, token, wait_http,
};
use load::Target;
use procs::Proc;
use scenarios::SCENARIOS;

/// Command-line arguments.
#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmarks the BFFs against the demo services")]
pub struct Args {
    /// Length of each measurement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Open-loop arrival rate (requests per second), below saturation.
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// Closed-loop concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Scenarios to run (1–12; 12, instructions under callgrind, only
    /// when asked for: it needs valgrind and takes minutes).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8,9,10,11")]
    pub scenarios: Vec<u8>,
    /// Scenario 9: idle live streams held open at once.
    #[arg(long, default_value_t = 10_000)]
    pub live_streams: usize,
    /// Scenario 9: clients of one product a change fans out to.
    #[arg(long, default_value_t = 1_000)]
    pub fan_out: usize,
    /// A seconds-long run of scenario 1 on debug binaries, for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Build and run debug binaries instead of release ones.
    #[arg(long)]
    pub debug: bool,
    /// Do not build; use the binaries already in the target directory.
    #[arg(long)]
    pub no_build: bool,
    /// The Node.js/Fastify baseline: auto (when node and npm are installed), on, off.
    #[arg(long, default_value = "auto")]
    pub node: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Scenario 10: requests each static upstream connection serves before
    /// it answers `Connection: close` (nginx's `keepalive_requests`).
    #[arg(long, default_value_t = 100)]
    pub upstream_keepalive: u32,
    /// Scenario 2: latency set on each of the three upstreams. At a rate ×
    /// latency above the BFF's bound on requests in flight, this is what
    /// shows the bound's ceiling (`BFF_MAX_IN_FLIGHT`) holding requests back.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub upstream_latency: Duration,
    /// Scenario 11: users whose dashboards are asked for in turn.
    #[arg(long, default_value_t = 200)]
    pub overload_users: usize,
    /// Scenario 10: closed-loop connections.
    #[arg(long, default_value_t = 64)]
    pub static_connections: usize,
    /// Scenario 10: record each measurement with `perf` and draw it as a
    /// flame graph (`DIR/<target>-<load>.svg`; needs perf and inferno).
    /// The recorded processes pay for the sampling: their CPU figures in
    /// such a run are not for comparison.
    #[arg(long)]
    pub perf: Option<PathBuf>,
    /// Scenario 12: dashboards measured under callgrind (after 300 to warm
    /// up), for the bff-mobile, the I/O floor and `--compare-with`.
    #[arg(long, default_value_t = 1000)]
    pub callgrind_requests: usize,
    /// Another bff-mobile binary (e.g. the previous commit's) to measure in
    /// scenarios 1, 11 and 12 against this one (alternately in 1 and 11),
    /// in the same run.
    #[arg(long)]
    pub compare_with: Option<PathBuf>,
}

/// Entry point: runs, prints, exits non-zero on failure (or, in smoke mode,
/// on any failed request).
pub fn main(mut args: Args) -> ExitCode {
    if args.smoke {
        args.duration = Duration::from_secs(1);
        args.rate = 50.0;
        args.connections = 4;
        args.scenarios = vec![1];
        args.debug = true;
        args.node = "off".to_owned();
    }
    // The generator shares CPU 0 with the upstreams, leaving the BFF's CPU
    // to the BFF alone. (The CPU count is taken before pinning.)
    procs::cpus();
    procs::pin_self(0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            println!("{}", report.table);
            if let Some(path) = &args.json
                && let Err(e) = std::fs::write(
                    path,
                    serde_json::to_vec_pretty(&report.rows).unwrap_or_default(),
                )
            {
                eprintln!("loadtest: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            let errors: u64 = report.rows.iter().map(|r| r.errors).sum();
            if args.smoke && (errors > 0 || report.rows.iter().any(|r| r.rps <= 0.0)) {
                eprintln!("loadtest: smoke run saw {errors} failed requests");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the demo services and, when a scenario asked for needs it,
/// bff-mobile; then runs each scenario asked for, in the table's order.
async fn run(args: &Args) -> Result<Report, String> {
    ports_free()?;
    let bin = binaries(args)?;
    let plan = plan();
    let demo_args = ["--port-base", "17000", "--stock-every", "0s"];
    let _demo = Proc::spawn(
        "demo-services",
        &bin.join("demo-services"),
        &demo_args,
        &[("RUST_LOG".into(), "warn".into())],
        plan.other_cpu,
    )?;
    wait_http(DEMO_BASE + 99, "/healthz", "the demo services").await?;
    let user_token =
        token("grant_type=password&username=user0001&password=demo-password&audience=bff-mobile")
            .await?;
    let web_token =
        token("grant_type=password&username=user0001&password=demo-password&audience=bff-web")
            .await?;
    let partner_token = token("grant_type=client_credentials&client_id=partner-acme&client_secret=acme-secret&audience=bff-partner").await?;
    // The demo services run the default seed: the same ids are known here.
    let data = tokio::task::spawn_blocking(|| DemoData::generate(DEFAULT_SEED))
        .await
        .map_err(|e| e.to_string())?;
    let user_id = data.users()[0].id;
    let product_ids: Vec<String> = data.products()[..50]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    let wanted: Vec<_> = SCENARIOS
        .iter()
        .filter(|s| args.scenarios.contains(&s.number))
        .collect();
    let mobile = if wanted.iter().any(|s| s.uses_mobile) {
        let p = Proc::spawn(
            "bff-mobile",
            &bin.join("bff-mobile"),
            &[],
            &bff_env(MOBILE_PORT),
            plan.bff_cpu,
        )?;
        wait_http(MOBILE_PORT, "/readyz", "bff-mobile").await?;
        Some(p)
    } else {
        None
    };
    let mobile_idle_rss = mobile.as_ref().map(Proc::rss_kib).transpose()?;
    let dashboard = Arc::new(vec![
        Target::get(addr(MOBILE_PORT), "/v1/dashboard")
            .header("authorization", &format!("Bearer {user_token}")),
    ]);
    let upstreams = Arc::new(vec![
        Target::get(addr(DEMO_BASE + 1), format!("/users/{user_id}")),
        Target::get(
            addr(DEMO_BASE + 2),
            format!("/orders?user_id={user_id}&limit=5"),
        ),
        Target::get(
            addr(DEMO_BASE + 3),
            format!("/recommendations?user_id={user_id}&limit=3"),
        ),
    ]);
    let mut bench = Bench {
        args,
        bin,
        plan,
        data,
        user_token,
        web_token,
        partner_token,
        product_ids,
        mobile,
        mobile_idle_rss,
        dashboard,
        upstreams,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    for scenario in wanted {
        (scenario.run)(&mut bench).await?;
    }
    let table = render(&bench.rows, &bench.notes, &bench.plan, args);
    Ok(Report {
        rows: bench.rows,
        table,
    })
}

struct Report {
    rows: Vec<Row>,
    table: String,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn binaries(args: &Args) -> Result<PathBuf, String> {
    let root = workspace_root();
    let profile = if args.debug { "dev" } else { "release" };
    if !args.no_build {
        eprintln!("building {profile} binaries…");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--profile",
                profile,
                "-p",
                "demo-services",
                "-p",
                "bff-mobile",
                "-p",
                "bff-web",
                "-p",
                "bff-partner",
                // The I/O floor (src/bin/io-floor.rs), and the harness itself.
                "-p",
                "loadtest",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("the build failed".into());
        }
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    Ok(target.join(if args.debug { "debug" } else { "release" }))
}

fn render(rows: &[Row], notes: &[String], plan: &Plan, args: &Args) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} binaries, {} CPUs, BFF pinned to {}, {} per measurement\n",
        if args.debug { "debug" } else { "release" },
        procs::cpus(),
        plan.bff_cpu
            .map_or("nothing (one CPU)".to_owned(), |c| format!("CPU {c}")),
        humantime::format_duration(args.duration)
    );
    let _ = writeln!(
        out,
        "| scenario | target | load | req/s | p50 ms | p99 ms | CPU µs/req | demo upstream calls/req | errors | note |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
            r.scenario,
            r.target,
            r.mode,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.cpu_us_per_req
                .map_or("–".to_owned(), |c| format!("{c:.0}")),
            r.upstream_calls_per_req
                .map_or("–".to_owned(), |c| format!("{c:.2}")),
            r.errors,
            r.note
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::bench::counter_total;

    #[test]
    fn counter_totals_sum_every_series_of_that_counter_only() {
        let text = "\
# TYPE bff_upstream_shed_total counter
bff_upstream_shed_total{upstream=\"user\"} 612
bff_upstream_shed_total{upstream=\"order\"} 1004
bff_upstream_shed_total_other 7
bff_aggregate_partial_responses_total{route=\"/v1/dashboard\"} 1080
";
        assert_eq!(counter_total(text, "bff_upstream_shed_total"), 1616);
        assert_eq!(
            counter_total(text, "bff_aggregate_partial_responses_total"),
            1080
        );
        assert_eq!(counter_total(text, "bff_circuit_transitions_total"), 0);
    }
}
