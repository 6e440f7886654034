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

mod live;
pub mod load;
pub mod otlp_sink;
pub mod procs;
pub mod tiers;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use demo_services::DemoData;
use demo_services::data::DEFAULT_SEED;
use http::Method;

use load::{Stats, Target};
use procs::Proc;

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
    /// Scenarios to run (1–10).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8,9,10")]
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
    /// Scenario 10: closed-loop connections.
    #[arg(long, default_value_t = 64)]
    pub static_connections: usize,
    /// Scenario 10: record each measurement with `perf` and draw it as a
    /// flame graph (`DIR/<target>-<load>.svg`; needs perf and inferno).
    /// The recorded processes pay for the sampling: their CPU figures in
    /// such a run are not for comparison.
    #[arg(long)]
    pub perf: Option<PathBuf>,
    /// Another bff-mobile binary (e.g. the previous commit's) to measure in
    /// scenario 1 against this one, alternately, in the same run.
    #[arg(long)]
    pub compare_with: Option<PathBuf>,
}

const DEMO_BASE: u16 = 17_000;
const MOBILE_PORT: u16 = 18_081;
const CACHED_MOBILE_PORT: u16 = 18_084;
const EXPORTING_MOBILE_PORT: u16 = 18_085;
const SAMPLED_MOBILE_PORT: u16 = 18_086;
const COMPARED_MOBILE_PORT: u16 = 18_087;
const WEB_PORT: u16 = 18_082;
const PARTNER_PORT: u16 = 18_083;
const NODE_PORT: u16 = 18_091;
const FLOOR_PORT: u16 = 18_092;
const STATIC_MOBILE_PORT: u16 = 18_088;
const STATIC_FLOOR_PORT: u16 = 18_093;
/// The static upstream stand-ins of scenario 10: user, order, recommendation.
const STATIC_BASE: u16 = 17_201;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One line of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    scenario: String,
    target: String,
    mode: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: Option<f64>,
    /// Calls the demo services received per request (the fragment cache
    /// and batching make it less than the upstreams a page needs).
    upstream_calls_per_req: Option<f64>,
    errors: u64,
    note: String,
}

fn row(
    scenario: &str,
    target: &str,
    mode: String,
    stats: &Stats,
    cpu: Option<f64>,
    note: &str,
) -> Row {
    Row {
        scenario: scenario.to_owned(),
        target: target.to_owned(),
        mode,
        rps: stats.throughput(),
        p50_ms: stats.percentile_ms(0.5),
        p99_ms: stats.percentile_ms(0.99),
        cpu_us_per_req: cpu,
        upstream_calls_per_req: stats
            .upstream_calls
            .map(|calls| calls as f64 / (stats.ok + stats.errors).max(1) as f64),
        errors: stats.errors + stats.dropped,
        note: note.to_owned(),
    }
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

async fn wait_http(port: u16, path: &str, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok((200, _)) = load::fetch(&Target::get(addr(port), path)).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "{what} did not answer 200 on :{port}{path} within 60 s"
    ))
}

async fn control(method: Method, path: &str, body: &str) -> Result<(), String> {
    let mut target =
        Target::get(addr(DEMO_BASE + 99), path).header("content-type", "application/json");
    target.method = method;
    target.body = Bytes::from(body.to_owned());
    match load::fetch(&target).await? {
        (s, _) if s < 300 => Ok(()),
        (s, b) => Err(format!(
            "control API {path}: {s} {}",
            String::from_utf8_lossy(&b)
        )),
    }
}

/// Every call the demo services have received (their control API's
/// `/stats`); `None` when it cannot be read.
async fn demo_calls() -> Option<u64> {
    fn sum(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::Object(map) => map.values().map(sum).sum(),
            _ => 0,
        }
    }
    match load::fetch(&Target::get(addr(DEMO_BASE + 99), "/stats")).await {
        Ok((200, body)) => serde_json::from_slice(&body).ok().map(|v| sum(&v)),
        _ => None,
    }
}

async fn token(form: &str) -> Result<String, String> {
    let mut target = Target::get(addr(DEMO_BASE), "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded");
    target.method = Method::POST;
    target.body = Bytes::from(form.to_owned());
    let (status, body) = load::fetch(&target).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("token response: {e}"))?;
    match (status, json["access_token"].as_str()) {
        (200, Some(t)) => Ok(t.to_owned()),
        _ => Err(format!("no token ({status}): {json}")),
    }
}

fn bff_env(port: u16) -> Vec<(String, String)> {
    let base = |offset: u16| format!("http://127.0.0.1:{}", DEMO_BASE + offset);
    vec![
        ("BFF_LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "BFF_JWKS_URL".into(),
            format!("{}/.well-known/jwks.json", base(0)),
        ),
        ("BFF_ISSUER".into(), base(0)),
        ("BFF_UPSTREAM_USER".into(), base(1)),
        ("BFF_UPSTREAM_ORDER".into(), base(2)),
        ("BFF_UPSTREAM_RECOMMENDATION".into(), base(3)),
        ("BFF_UPSTREAM_PRODUCT".into(), base(4)),
        (
            "BFF_UPSTREAM_PRICING".into(),
            format!("{}/graphql", base(5)),
        ),
        ("BFF_UPSTREAM_REVIEW".into(), base(6)),
        ("BFF_UPSTREAM_INVENTORY".into(), base(7)),
        ("BFF_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "warn".into()),
        // One token makes every request: quotas it never reaches, so each
        // request pays for its check and none is refused. (Run with
        // BFF_RATE_LIMITS=off in the environment to measure without.)
        ("BFF_RATE_LIMIT_STANDARD".into(), "100000000/1s".into()),
        ("BFF_RATE_LIMIT_PREMIUM".into(), "100000000/1s".into()),
    ]
}

struct Plan {
    bff_cpu: Option<usize>,
    other_cpu: Option<usize>,
}

fn plan() -> Plan {
    let n = procs::cpus();
    if n >= 2 {
        Plan {
            bff_cpu: Some(n - 1),
            other_cpu: Some(0),
        }
    } else {
        Plan {
            bff_cpu: None,
            other_cpu: None,
        }
    }
}

/// Open loop at `rate` after a one-second warm-up, with the server's CPU
/// time per completed request.
async fn open(
    server: Option<&Proc>,
    targets: &Arc<Vec<Target>>,
    rate: f64,
    duration: Duration,
) -> Result<(Stats, Option<f64>), String> {
    let _ = load::open_loop(
        targets.clone(),
        rate,
        Duration::from_secs(1).min(duration),
        256,
    )
    .await;
    let calls = demo_calls().await;
    let before = server.map(Proc::cpu_time).transpose()?;
    let mut stats = load::open_loop(targets.clone(), rate, duration, 1024).await;
    let after = server.map(Proc::cpu_time).transpose()?;
    stats.upstream_calls = calls
        .zip(demo_calls().await)
        .map(|(b, a)| a.saturating_sub(b));
    let cpu = before
        .zip(after)
        .map(|(b, a)| (a - b).as_secs_f64() * 1e6 / (stats.ok + stats.errors).max(1) as f64);
    Ok((stats, cpu))
}

/// Closed loop with `connections` workers, with CPU time per request.
async fn closed(
    server: Option<&Proc>,
    targets: &Arc<Vec<Target>>,
    connections: usize,
    duration: Duration,
) -> Result<(Stats, Option<f64>), String> {
    let _ = load::closed_loop(targets.clone(), connections, Duration::from_millis(500)).await;
    let calls = demo_calls().await;
    let before = server.map(Proc::cpu_time).transpose()?;
    let mut stats = load::closed_loop(targets.clone(), connections, duration).await;
    let after = server.map(Proc::cpu_time).transpose()?;
    stats.upstream_calls = calls
        .zip(demo_calls().await)
        .map(|(b, a)| a.saturating_sub(b));
    let cpu = before
        .zip(after)
        .map(|(b, a)| (a - b).as_secs_f64() * 1e6 / (stats.ok + stats.errors).max(1) as f64);
    Ok((stats, cpu))
}

fn node_wanted(mode: &str) -> Result<bool, String> {
    let available = ["node", "npm"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    match mode {
        "off" => Ok(false),
        "auto" => Ok(available),
        "on" if available => Ok(true),
        "on" => Err("--node on, but node and npm are not both installed".into()),
        other => Err(format!("--node takes auto, on or off, not {other:?}")),
    }
}

fn start_node(plan: &Plan) -> Result<Proc, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node-baseline");
    if !dir.join("node_modules").exists() {
        eprintln!("installing the Node.js baseline's packages…");
        let status = Command::new("npm")
            .current_dir(&dir)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                "--loglevel=error",
            ])
            .status()
            .map_err(|e| format!("npm: {e}"))?;
        if !status.success() {
            return Err("npm install failed for node-baseline".into());
        }
    }
    let mut env = bff_env(NODE_PORT);
    env.push(("PORT".into(), NODE_PORT.to_string()));
    Proc::spawn(
        "node-baseline",
        Path::new("node"),
        &[&dir.join("server.js").to_string_lossy()],
        &env,
        plan.bff_cpu,
    )
}

/// Refuses to start when a port the harness serves on is taken: a server
/// left over from an earlier run would answer in place of the one under
/// test (its readiness check passes) and every figure would be someone
/// else's.
fn ports_free() -> Result<(), String> {
    let servers = [
        MOBILE_PORT,
        CACHED_MOBILE_PORT,
        EXPORTING_MOBILE_PORT,
        SAMPLED_MOBILE_PORT,
        COMPARED_MOBILE_PORT,
        WEB_PORT,
        PARTNER_PORT,
        NODE_PORT,
        FLOOR_PORT,
        STATIC_MOBILE_PORT,
        STATIC_FLOOR_PORT,
    ];
    let demo = (0..8).chain([99]).map(|offset| DEMO_BASE + offset);
    let statics = (0..3).map(|offset| STATIC_BASE + offset);
    for port in servers.into_iter().chain(demo).chain(statics) {
        if let Err(e) = std::net::TcpListener::bind(addr(port)) {
            return Err(format!(
                "port {port} is not free ({e}): a process of an earlier run? (`ss -ltnp | grep :{port}`)"
            ));
        }
    }
    Ok(())
}

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
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let wants = |n: u8| args.scenarios.contains(&n);

    let mobile = if [1, 2, 5, 6, 7, 8].iter().any(|n| wants(*n)) {
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

    if wants(1) {
        let (floor, _) = closed(None, &upstreams, connections, duration).await?;
        rows.push(row(
            "0 floor",
            "upstreams alone (3 calls)",
            format!("closed ×{connections}"),
            &floor,
            None,
            "what the upstreams allow",
        ));
        let (s, cpu) = closed(mobile.as_ref(), &dashboard, connections, duration).await?;
        let ratio = s.throughput() / floor.throughput().max(1e-9);
        rows.push(row(
            "1 mobile dashboard",
            "bff-mobile",
            format!("closed ×{connections}"),
            &s,
            cpu,
            &format!("{:.0}% of the floor", ratio * 100.0),
        ));
        let (s, cpu) = open(mobile.as_ref(), &dashboard, rate, duration).await?;
        let bff_cpu = cpu;
        rows.push(row(
            "1 mobile dashboard",
            "bff-mobile",
            format!("open {rate}/s"),
            &s,
            cpu,
            "",
        ));
        if mobile.is_some() {
            io_floor(
                &bin, &plan, &dashboard, &upstreams, args, bff_cpu, &mut rows, &mut notes,
            )
            .await?;
        }
        if node_wanted(&args.node)? {
            let node = start_node(&plan)?;
            wait_http(NODE_PORT, "/healthz", "the Node.js baseline").await?;
            let node_dashboard = Arc::new(vec![
                Target::get(addr(NODE_PORT), "/v1/dashboard")
                    .header("authorization", &format!("Bearer {user_token}")),
            ]);
            let (s, cpu) = closed(Some(&node), &node_dashboard, connections, duration).await?;
            rows.push(row(
                "1 mobile dashboard",
                "node-fastify baseline",
                format!("closed ×{connections}"),
                &s,
                cpu,
                "",
            ));
            let (s, node_cpu) = open(Some(&node), &node_dashboard, rate, duration).await?;
            rows.push(row(
                "1 mobile dashboard",
                "node-fastify baseline",
                format!("open {rate}/s"),
                &s,
                node_cpu,
                "",
            ));
            if let (Some(b), Some(n)) = (bff_cpu, node_cpu) {
                notes.push(format!("Scenario 1: CPU per request, Node.js/Fastify ÷ bff-mobile = {:.1}× (target ≥ 5×)", n / b));
            }
        }
        if let Some(m) = &mobile {
            notes.push(body_sizes(&user_token, &upstreams, m).await?);
        }
        if let (Some(m), Some(other)) = (&mobile, &args.compare_with) {
            let compared =
                compare_builds(m, other, &plan, &dashboard, &user_token, args, &mut rows).await?;
            notes.push(compared);
        }
    }

    if wants(2) {
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
        let (floor, _) = open(None, &upstreams, rate, duration).await?;
        rows.push(row(
            &name,
            "upstreams alone (3 calls)",
            format!("open {rate}/s"),
            &floor,
            None,
            "the slowest of three",
        ));
        let (s, cpu) = open(mobile.as_ref(), &dashboard, rate, duration).await?;
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
    }

    if wants(3) {
        let web = Proc::spawn(
            "bff-web",
            &bin.join("bff-web"),
            &[],
            &bff_env(WEB_PORT),
            plan.bff_cpu,
        )?;
        wait_http(WEB_PORT, "/readyz", "bff-web").await?;
        let product = &product_ids[0];
        let page = Arc::new(vec![
            Target::get(addr(WEB_PORT), format!("/v1/products/{product}"))
                .header("authorization", &format!("Bearer {web_token}")),
        ]);
        let (s, cpu) = closed(Some(&web), &page, connections, duration).await?;
        rows.push(row(
            "3 web product page",
            "bff-web (gRPC+GraphQL+REST)",
            format!("closed ×{connections}"),
            &s,
            cpu,
            "",
        ));
        let (s, cpu) = open(Some(&web), &page, rate, duration).await?;
        rows.push(row(
            "3 web product page",
            "bff-web (gRPC+GraphQL+REST)",
            format!("open {rate}/s"),
            &s,
            cpu,
            "",
        ));
    }

    if wants(4) {
        let partner = Proc::spawn(
            "bff-partner",
            &bin.join("bff-partner"),
            &[],
            &bff_env(PARTNER_PORT),
            plan.bff_cpu,
        )?;
        wait_http(PARTNER_PORT, "/readyz", "bff-partner").await?;
        let ids = &product_ids;
        let batch = Arc::new(vec![
            Target::get(
                addr(PARTNER_PORT),
                format!("/v2/products?ids={}", ids.join(",")),
            )
            .header("authorization", &format!("Bearer {partner_token}")),
        ]);
        let partner_rate = (rate / 4.0).max(1.0);
        let (s, cpu) = closed(Some(&partner), &batch, connections, duration).await?;
        rows.push(row(
            "4 partner batch of 50",
            "bff-partner",
            format!("closed ×{connections}"),
            &s,
            cpu,
            "",
        ));
        let (s, cpu) = open(Some(&partner), &batch, partner_rate, duration).await?;
        rows.push(row(
            "4 partner batch of 50",
            "bff-partner",
            format!("open {partner_rate}/s"),
            &s,
            cpu,
            "",
        ));
    }

    if wants(5)
        && let Some(m) = &mobile
    {
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
            ("bff-mobile, no fresh caching", m, &dashboard),
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
        notes.push(match tiers::hit_latency(&data, 2001).await? {
            Some(t) => format!(
                "Scenario 5, one fragment hit on the store itself ({} user profiles): local tier p50 {:.1} µs, p99 {:.1} µs; shared tier (Redis on localhost, then filling the local tier) p50 {:.1} µs, p99 {:.1} µs.",
                t.reads, t.local_us.0, t.local_us.1, t.shared_us.0, t.shared_us.1
            ),
            None => "Scenario 5: no redis-server on the PATH, so shared-tier hit latency was not measured.".to_owned(),
        });
    }

    if wants(6) {
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
        let (s, cpu) = open(mobile.as_ref(), &dashboard, rate, duration).await?;
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
    }

    if wants(7)
        && let Some(m) = &mobile
    {
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
    }

    if wants(10) {
        notes
            .extend(static_upstreams(&bin, &plan, &user_token, &upstreams, args, &mut rows).await?);
    }

    if wants(8)
        && let Some(m) = &mobile
    {
        notes.push(telemetry_cost(m, &bin, &plan, &dashboard, &user_token, args, &mut rows).await?);
    }

    if wants(9) {
        notes.extend(
            live::live(
                &bin,
                &plan,
                &web_token,
                &product_ids,
                args.live_streams,
                args.fan_out,
                &mut rows,
            )
            .await?,
        );
    }

    let table = render(&rows, &notes, &plan, args);
    Ok(Report { rows, table })
}

/// Scenario 1 against the I/O floor: a minimal hyper server making the same
/// three upstream calls without parsing them and answering a constant body
/// of bff-mobile's size (`io-floor`), on the same CPU, in the same run.
#[allow(clippy::too_many_arguments)]
async fn io_floor(
    bin: &Path,
    plan: &Plan,
    dashboard: &Arc<Vec<Target>>,
    upstreams: &Arc<Vec<Target>>,
    args: &Args,
    bff_open_cpu: Option<f64>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    let size = load::fetch(&dashboard[0]).await?.1.len();
    let (floor, target) = start_floor(bin, plan, "io-floor", FLOOR_PORT, size, upstreams).await?;
    let (s, closed_cpu) = closed(Some(&floor), &target, connections, duration).await?;
    rows.push(row(
        "1 mobile dashboard",
        "I/O floor (hyper, unparsed)",
        format!("closed ×{connections}"),
        &s,
        closed_cpu,
        &format!("{size} B constant body"),
    ));
    let (s, open_cpu) = open(Some(&floor), &target, rate, duration).await?;
    rows.push(row(
        "1 mobile dashboard",
        "I/O floor (hyper, unparsed)",
        format!("open {rate}/s"),
        &s,
        open_cpu,
        "",
    ));
    if let (Some(b), Some(f)) = (bff_open_cpu, open_cpu) {
        notes.push(format!(
            "Scenario 1: CPU per request at {rate}/s open loop, bff-mobile ÷ I/O floor = {:.2}× ({b:.0} vs {f:.0} µs; target ≤ 1.5×)",
            b / f
        ));
    }
    Ok(())
}

/// Starts the I/O floor (`io-floor`) on `port`, on the BFF's CPU, making
/// the calls of `upstreams` and answering `size` bytes; with its dashboard.
async fn start_floor(
    bin: &Path,
    plan: &Plan,
    name: &str,
    port: u16,
    size: usize,
    upstreams: &[Target],
) -> Result<(Proc, Arc<Vec<Target>>), String> {
    let mut args = vec![addr(port).to_string(), size.to_string()];
    args.extend(
        upstreams
            .iter()
            .map(|t| format!("http://{}{}", t.addr, t.path)),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let floor = Proc::spawn(name, &bin.join("io-floor"), &args, &[], plan.bff_cpu)?;
    wait_http(port, "/", "the I/O floor").await?;
    Ok((
        floor,
        Arc::new(vec![Target::get(addr(port), "/v1/dashboard")]),
    ))
}

/// The largest resident set of `proc` while `work` runs (sampled every
/// 50 ms), with what `work` returned.
async fn peak_rss<T>(proc: &Proc, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let mut peak = proc.rss_kib().unwrap_or(0);
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut work => return (out, peak.max(proc.rss_kib().unwrap_or(0))),
            _ = tick.tick() => peak = peak.max(proc.rss_kib().unwrap_or(0)),
        }
    }
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
    let dir = std::env::temp_dir().join(format!("loadtest-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut routes = Vec::new();
    let mut statics = Vec::new();
    for (i, t) in upstreams.iter().enumerate() {
        let (status, body) = load::fetch(t).await?;
        if status != 200 {
            return Err(format!("recording {}: status {status}", t.path));
        }
        let file = dir.join(format!("{i}.json"));
        std::fs::write(&file, &body).map_err(|e| format!("{}: {e}", file.display()))?;
        let port = STATIC_BASE + i as u16;
        routes.push(format!("{}={}={}", addr(port), file.display(), t.path));
        statics.push(Target::get(addr(port), t.path.clone()));
    }
    let mut static_args = vec![args.upstream_keepalive.to_string(), "5000".to_owned()];
    static_args.extend(routes);
    let static_args: Vec<&str> = static_args.iter().map(String::as_str).collect();
    let _static = Proc::spawn(
        "static-upstream",
        &bin.join("static-upstream"),
        &static_args,
        &[],
        plan.other_cpu,
    )?;
    for t in &statics {
        wait_http(t.addr.port(), &t.path, "the static upstreams").await?;
    }
    let statics = Arc::new(statics);

    let mut env = bff_env(STATIC_MOBILE_PORT);
    for (name, port) in [
        ("BFF_UPSTREAM_USER", STATIC_BASE),
        ("BFF_UPSTREAM_ORDER", STATIC_BASE + 1),
        ("BFF_UPSTREAM_RECOMMENDATION", STATIC_BASE + 2),
    ] {
        env.retain(|(k, _)| k != name);
        env.push((name.into(), format!("http://{}", addr(port))));
    }
    env.push(("BFF_UPSTREAM_ALL_COALESCE".into(), "false".into()));
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
    let _ = std::fs::remove_dir_all(&dir);
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

async fn body_sizes(
    token: &str,
    upstreams: &Arc<Vec<Target>>,
    _mobile: &Proc,
) -> Result<String, String> {
    let mut upstream_bytes = 0;
    for t in upstreams.iter() {
        upstream_bytes += load::fetch(t).await?.1.len();
    }
    let plain = Target::get(addr(MOBILE_PORT), "/v1/dashboard")
        .header("authorization", &format!("Bearer {token}"));
    let identity = load::fetch(&plain).await?.1.len();
    let br = load::fetch(&plain.clone().header("accept-encoding", "br"))
        .await?
        .1
        .len();
    Ok(format!(
        "Mobile body: {identity} B = {:.1}% of the upstreams' {upstream_bytes} B (target ≤ 30%); with br {br} B = {:.1}% (target ≤ 10%)",
        identity as f64 * 100.0 / upstream_bytes as f64,
        br as f64 * 100.0 / upstream_bytes as f64
    ))
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

/// What a BFF's counters say it degraded: dashboards answered in part,
/// upstream calls shed by a full bulkhead. A partial dashboard is a 200, so
/// the harness's own error count does not see it.
struct Degradation {
    partial: u64,
    shed: u64,
}

impl Degradation {
    /// The BFF's counters now (its `/metrics` on `port`).
    async fn of(port: u16) -> Result<Self, String> {
        let (status, body) = load::fetch(&Target::get(addr(port), "/metrics")).await?;
        if status != 200 {
            return Err(format!("GET /metrics on port {port}: status {status}"));
        }
        let text = String::from_utf8_lossy(&body);
        Ok(Degradation {
            partial: counter_total(&text, "bff_aggregate_partial_responses_total"),
            shed: counter_total(&text, "bff_upstream_shed_total"),
        })
    }

    /// What was counted after `before`.
    fn since(&self, before: &Degradation) -> Degradation {
        Degradation {
            partial: self.partial.saturating_sub(before.partial),
            shed: self.shed.saturating_sub(before.shed),
        }
    }
}

/// The sum of every series of the counter `name` in Prometheus text.
fn counter_total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !rest.starts_with(['{', ' ']) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum::<f64>() as u64
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
    let (sink, received) = otlp_sink::start().await?;
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

/// Scenario 1 against another build of bff-mobile (`--compare-with`): both
/// run side by side on the same CPU, measured alternately four times, so
/// the machine's drift hits both alike. Returns the ratios of the medians.
async fn compare_builds(
    this: &Proc,
    other: &std::path::Path,
    plan: &Plan,
    dashboard: &Arc<Vec<Target>>,
    user_token: &str,
    args: &Args,
    rows: &mut Vec<Row>,
) -> Result<String, String> {
    let compared = Proc::spawn(
        "bff-mobile (compared build)",
        other,
        &[],
        &bff_env(COMPARED_MOBILE_PORT),
        plan.bff_cpu,
    )?;
    wait_http(
        COMPARED_MOBILE_PORT,
        "/readyz",
        "bff-mobile (compared build)",
    )
    .await?;
    let compared_dashboard = Arc::new(vec![
        Target::get(addr(COMPARED_MOBILE_PORT), "/v1/dashboard")
            .header("authorization", &format!("Bearer {user_token}")),
    ]);
    let cpu = alternate(
        "1 builds compared",
        &[
            ("bff-mobile, compared build", &compared, &compared_dashboard),
            ("bff-mobile, this build", this, dashboard),
        ],
        4,
        args,
        rows,
    )
    .await?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    let mut medians = cpu.into_iter().map(|(c, o)| (median(c), median(o)));
    let ((oc, oo), (tc, to)) = (
        medians.next().unwrap_or_default(),
        medians.next().unwrap_or_default(),
    );
    Ok(format!(
        "Scenario 1, this build ÷ {} (4 alternating rounds, medians): closed {:.3}× ({:.1} vs {:.1} µs), open {:.3}× ({:.1} vs {:.1} µs).",
        other.display(),
        tc / oc.max(1e-9),
        tc,
        oc,
        to / oo.max(1e-9),
        to,
        oo
    ))
}

/// Measures each of `variants` (name, process, targets) closed and then
/// open loop, in turn, `rounds` times, so the machine's drift hits all
/// alike. Returns each variant's CPU µs/request, closed and open.
async fn alternate(
    scenario: &str,
    variants: &[(&str, &Proc, &Arc<Vec<Target>>)],
    rounds: usize,
    args: &Args,
    rows: &mut Vec<Row>,
) -> Result<Vec<(Vec<f64>, Vec<f64>)>, String> {
    let (connections, rate, duration) = (args.connections, args.rate, args.duration);
    let mut cpu = vec![(Vec::new(), Vec::new()); variants.len()];
    for _round in 0..rounds {
        for (i, (name, proc, targets)) in variants.iter().enumerate() {
            let (s, c) = closed(Some(proc), targets, connections, duration).await?;
            cpu[i].0.extend(c);
            rows.push(row(
                scenario,
                name,
                format!("closed ×{connections}"),
                &s,
                c,
                "",
            ));
            let (s, c) = open(Some(proc), targets, rate, duration).await?;
            cpu[i].1.extend(c);
            rows.push(row(scenario, name, format!("open {rate}/s"), &s, c, ""));
        }
    }
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::counter_total;

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
