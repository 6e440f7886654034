//! Scenario 1: the mobile dashboard, closed and open loop, against the
//! upstreams alone, the I/O floor and (when installed) the Node.js baseline;
//! its body sizes; and `--compare-with` another build.

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
        upstreams,
        rows,
        notes,
        ..
    } = b;
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    let (floor, _) = closed(None, upstreams, connections, duration).await?;
    rows.push(row(
        "0 floor",
        "upstreams alone (3 calls)",
        format!("closed ×{connections}"),
        &floor,
        None,
        "what the upstreams allow",
    ));
    let (s, cpu) = closed(mobile.as_ref(), dashboard, connections, duration).await?;
    let ratio = s.throughput() / floor.throughput().max(1e-9);
    rows.push(row(
        "1 mobile dashboard",
        "bff-mobile",
        format!("closed ×{connections}"),
        &s,
        cpu,
        &format!("{:.0}% of the floor", ratio * 100.0),
    ));
    let (s, cpu) = open(mobile.as_ref(), dashboard, rate, duration).await?;
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
        io_floor(bin, plan, dashboard, upstreams, args, bff_cpu, rows, notes).await?;
    }
    if node_wanted(&args.node)? {
        let node = start_node(plan)?;
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
            notes.push(format!(
                "Scenario 1: CPU per request, Node.js/Fastify ÷ bff-mobile = {:.1}× (target ≥ 5×)",
                n / b
            ));
        }
    }
    if let Some(m) = &mobile {
        notes.push(body_sizes(user_token, upstreams, m).await?);
    }
    if let (Some(m), Some(other)) = (&mobile, &args.compare_with) {
        let compared = compare_builds(m, other, plan, dashboard, user_token, args, rows).await?;
        notes.push(compared);
    }
    Ok(())
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
