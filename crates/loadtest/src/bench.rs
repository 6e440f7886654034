//! What every scenario uses: the ports, the processes' environment, the
//! open and closed loops with the server's CPU time, the results' rows, and
//! [`Bench`], the run's shared state that each scenario reads and adds its
//! rows and notes to.

pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::Command;
pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};

pub(crate) use bytes::Bytes;
pub(crate) use demo_services::DemoData;
pub(crate) use http::Method;
pub(crate) use std::net::SocketAddr;

pub(crate) use crate::load::{self, Stats, Target};
pub(crate) use crate::procs::{self, Proc};
pub(crate) use crate::{Args, tiers};

/// The run's state: what the scenarios share (the demo world, tokens, the
/// mobile BFF most of them measure) and what they produce (rows, notes).
pub(crate) struct Bench<'a> {
    pub(crate) args: &'a Args,
    /// Where the binaries are.
    pub(crate) bin: PathBuf,
    pub(crate) plan: Plan,
    /// The demo services' data (the default seed: the same ids as theirs).
    pub(crate) data: DemoData,
    pub(crate) user_token: String,
    pub(crate) web_token: String,
    pub(crate) partner_token: String,
    /// The first 50 products' ids.
    pub(crate) product_ids: Vec<String>,
    /// bff-mobile, started once when a scenario that needs it is asked for.
    pub(crate) mobile: Option<Proc>,
    pub(crate) mobile_idle_rss: Option<u64>,
    /// `GET /v1/dashboard` on bff-mobile, with the user's token.
    pub(crate) dashboard: Arc<Vec<Target>>,
    /// The three upstream calls the dashboard makes.
    pub(crate) upstreams: Arc<Vec<Target>>,
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
}

pub(crate) const DEMO_BASE: u16 = 17_000;
pub(crate) const MOBILE_PORT: u16 = 18_081;
pub(crate) const CACHED_MOBILE_PORT: u16 = 18_084;
pub(crate) const EXPORTING_MOBILE_PORT: u16 = 18_085;
pub(crate) const SAMPLED_MOBILE_PORT: u16 = 18_086;
pub(crate) const COMPARED_MOBILE_PORT: u16 = 18_087;
pub(crate) const WEB_PORT: u16 = 18_082;
pub(crate) const PARTNER_PORT: u16 = 18_083;
pub(crate) const NODE_PORT: u16 = 18_091;
pub(crate) const FLOOR_PORT: u16 = 18_092;
pub(crate) const STATIC_MOBILE_PORT: u16 = 18_088;
pub(crate) const STATIC_FLOOR_PORT: u16 = 18_093;
/// Scenario 11's bff-mobile (its own port: scenario 10's may still be
/// closing).
pub(crate) const OVERLOAD_MOBILE_PORT: u16 = 18_094;
/// Scenario 11's I/O floor.
pub(crate) const OVERLOAD_FLOOR_PORT: u16 = 18_095;
/// Scenario 9's bff-web (its own, with live limits raised).
pub(crate) const LIVE_WEB_PORT: u16 = 18_089;
/// The static upstream stand-ins of scenario 10: user, order, recommendation.
pub(crate) const STATIC_BASE: u16 = 17_201;

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One line of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub(crate) scenario: String,
    pub(crate) target: String,
    pub(crate) mode: String,
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) cpu_us_per_req: Option<f64>,
    /// Calls the demo services received per request (the fragment cache
    /// and batching make it less than the upstreams a page needs).
    pub(crate) upstream_calls_per_req: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) note: String,
}

pub(crate) fn row(
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

pub(crate) async fn wait_http(port: u16, path: &str, what: &str) -> Result<(), String> {
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

pub(crate) async fn control(method: Method, path: &str, body: &str) -> Result<(), String> {
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
pub(crate) async fn demo_calls() -> Option<u64> {
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

pub(crate) async fn token(form: &str) -> Result<String, String> {
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

pub(crate) fn bff_env(port: u16) -> Vec<(String, String)> {
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
        ("BFF_RATE_LIMIT_FREE".into(), "100000000/1s".into()),
        ("BFF_RATE_LIMIT_STANDARD".into(), "100000000/1s".into()),
        ("BFF_RATE_LIMIT_PREMIUM".into(), "100000000/1s".into()),
    ]
}

pub(crate) struct Plan {
    pub(crate) bff_cpu: Option<usize>,
    pub(crate) other_cpu: Option<usize>,
}

pub(crate) fn plan() -> Plan {
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
pub(crate) async fn open(
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
        .and_then(|(b, a)| cpu_per_request(a - b, &stats));
    Ok((stats, cpu))
}

/// A server's CPU microseconds per iteration of `stats` (`None` when none
/// completed).
pub(crate) fn cpu_per_request(cpu: Duration, stats: &Stats) -> Option<f64> {
    let n = stats.ok + stats.errors;
    (n > 0).then(|| cpu.as_secs_f64() * 1e6 / n as f64)
}

/// Closed loop with `connections` workers, with CPU time per request.
pub(crate) async fn closed(
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
        .and_then(|(b, a)| cpu_per_request(a - b, &stats));
    Ok((stats, cpu))
}

/// Refuses to start when a port the harness serves on is taken: a server
/// left over from an earlier run would answer in place of the one under
/// test (its readiness check passes) and every figure would be someone
/// else's.
pub(crate) fn ports_free() -> Result<(), String> {
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
        LIVE_WEB_PORT,
        OVERLOAD_MOBILE_PORT,
        OVERLOAD_FLOOR_PORT,
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

/// Starts the I/O floor (`io-floor`) on `port`, on the BFF's CPU, making
/// the calls of `upstreams` and answering `size` bytes; with its dashboard.
pub(crate) async fn start_floor(
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
pub(crate) async fn peak_rss<T>(
    proc: &Proc,
    work: impl std::future::Future<Output = T>,
) -> (T, u64) {
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

/// The sum of every series of the counter `name` in Prometheus text.
pub(crate) fn counter_total(metrics: &str, name: &str) -> u64 {
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

/// Measures each of `variants` (name, process, targets) closed and then
/// open loop, in turn, `rounds` times, so the machine's drift hits all
/// alike. Returns each variant's CPU µs/request, closed and open.
pub(crate) async fn alternate(
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

/// The static upstream stand-ins (`static-upstream`) answering recorded
/// bodies, with nginx's keep-alive behaviour; stopped, and their
/// recordings removed, when dropped.
pub(crate) struct Statics {
    _proc: Proc,
    dir: PathBuf,
}

impl Drop for Statics {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Statics {
    /// Records what each workload of `workloads` gets from the demo
    /// services and serves it: the `i`th target of every workload on
    /// [`STATIC_BASE`] + `i`, so a BFF pointed there ([`static_env`]) sees
    /// the demo world's answers. Returns the same workloads on the static
    /// upstreams.
    pub(crate) async fn start(
        bin: &Path,
        plan: &Plan,
        workloads: &[Arc<Vec<Target>>],
        args: &Args,
    ) -> Result<(Statics, Vec<Arc<Vec<Target>>>), String> {
        let dir = std::env::temp_dir().join(format!("loadtest-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut routes = Vec::new();
        let mut statics = Vec::new();
        for (w, workload) in workloads.iter().enumerate() {
            let mut targets = Vec::new();
            for (i, t) in workload.iter().enumerate() {
                let (status, body) = load::fetch(t).await?;
                if status != 200 {
                    return Err(format!("recording {}: status {status}", t.path));
                }
                let file = dir.join(format!("{w}-{i}.json"));
                std::fs::write(&file, &body).map_err(|e| format!("{}: {e}", file.display()))?;
                let port = STATIC_BASE + i as u16;
                routes.push(format!("{}={}={}", addr(port), file.display(), t.path));
                targets.push(Target::get(addr(port), t.path.clone()));
            }
            statics.push(Arc::new(targets));
        }
        let mut static_args = vec![args.upstream_keepalive.to_string(), "5000".to_owned()];
        static_args.extend(routes);
        let static_args: Vec<&str> = static_args.iter().map(String::as_str).collect();
        let proc = Proc::spawn(
            "static-upstream",
            &bin.join("static-upstream"),
            &static_args,
            &[],
            plan.other_cpu,
        )?;
        let statics_up = Statics { _proc: proc, dir };
        if let Some(first) = statics.first() {
            for t in first.iter() {
                wait_http(t.addr.port(), &t.path, "the static upstreams").await?;
            }
        }
        Ok((statics_up, statics))
    }
}

/// Connections the static upstreams have accepted, all addresses summed.
pub(crate) async fn static_connections() -> Result<u64, String> {
    let mut total = 0;
    for i in 0..3 {
        let target = Target::get(addr(STATIC_BASE + i), "/_static/connections");
        let (status, body) = load::fetch(&target).await?;
        let count = std::str::from_utf8(&body)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        match (status, count) {
            (200, Some(n)) => total += n,
            _ => {
                return Err(format!(
                    "static upstream {i}: no connection count ({status})"
                ));
            }
        }
    }
    Ok(total)
}

/// The environment of a bff-mobile on `port` over the static upstreams,
/// coalescing off so that it makes every call the I/O floor makes: no
/// figure then depends on many clients asking for one user at once.
pub(crate) fn static_env(port: u16) -> Vec<(String, String)> {
    let mut env = bff_env(port);
    for (name, port) in [
        ("BFF_UPSTREAM_USER", STATIC_BASE),
        ("BFF_UPSTREAM_ORDER", STATIC_BASE + 1),
        ("BFF_UPSTREAM_RECOMMENDATION", STATIC_BASE + 2),
    ] {
        env.retain(|(k, _)| k != name);
        env.push((name.into(), format!("http://{}", addr(port))));
    }
    env.push(("BFF_UPSTREAM_ALL_COALESCE".into(), "false".into()));
    env
}

/// What a BFF's counters say it degraded: dashboards answered in part,
/// upstream calls shed by a full bulkhead, requests refused at admission.
/// A partial dashboard is a 200, so the harness's own error count does not
/// see it.
pub(crate) struct Degradation {
    pub(crate) partial: u64,
    pub(crate) shed: u64,
    pub(crate) refused: u64,
    /// 503 answers, and of them those the BFF gave within 5 ms of reading
    /// the request (its `http.server.request.duration` histogram).
    pub(crate) answered_503: u64,
    pub(crate) answered_503_within_5ms: u64,
}

impl Degradation {
    /// The BFF's counters now (its `/metrics` on `port`).
    pub(crate) async fn of(port: u16) -> Result<Self, String> {
        let (status, body) = load::fetch(&Target::get(addr(port), "/metrics")).await?;
        if status != 200 {
            return Err(format!("GET /metrics on port {port}: status {status}"));
        }
        let text = String::from_utf8_lossy(&body);
        Ok(Degradation {
            partial: counter_total(&text, "bff_aggregate_partial_responses_total"),
            shed: counter_total(&text, "bff_upstream_shed_total"),
            refused: counter_total(&text, "bff_server_refused_total"),
            answered_503: histogram_503(&text, "http_server_request_duration_seconds_count", None),
            answered_503_within_5ms: histogram_503(
                &text,
                "http_server_request_duration_seconds_bucket",
                Some("0.005"),
            ),
        })
    }

    /// What was counted after `before`.
    pub(crate) fn since(&self, before: &Degradation) -> Degradation {
        Degradation {
            partial: self.partial.saturating_sub(before.partial),
            shed: self.shed.saturating_sub(before.shed),
            refused: self.refused.saturating_sub(before.refused),
            answered_503: self.answered_503.saturating_sub(before.answered_503),
            answered_503_within_5ms: self
                .answered_503_within_5ms
                .saturating_sub(before.answered_503_within_5ms),
        }
    }
}

/// The sum of the series of `name` answered 503 (and, for a histogram's
/// buckets, the one up to `le`).
fn histogram_503(metrics: &str, name: &str, le: Option<&str>) -> u64 {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            if !labels.contains("http_response_status_code=\"503\"") {
                return None;
            }
            if let Some(le) = le
                && !labels.contains(&format!("le=\"{le}\""))
            {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum::<f64>() as u64
}
