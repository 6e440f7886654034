//! Scenario 12: instructions per dashboard, counted by callgrind, for
//! bff-mobile and the I/O floor (and `--compare-with`'s build).
//!
//! Wall-clock CPU per request moves by ±25% between runs on a busy
//! machine; instructions executed repeat to about 0.1%. Each binary runs
//! under `valgrind --tool=callgrind --instr-atstart=no` on the BFF's CPU,
//! gets 300 requests to warm up (connections, caches, the JIT-less but
//! lazily built parts), and is counted over exactly `--callgrind-requests`
//! sequential requests on one keep-alive connection
//! (`callgrind_control -i on`/`off` around them), so start-up and shutdown
//! are not in the figure. User-space instructions only: the kernel's share
//! of a request (its socket calls) is not counted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::*;

/// Requests before counting starts.
const WARM_UP: usize = 300;
/// The port of the binary being counted.
const PORT: u16 = 18_096;

/// Runs the scenario, adding its notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    for tool in ["valgrind", "callgrind_control"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "scenario 12 needs {tool} (apt-get install valgrind)"
            ));
        }
    }
    let n = b.args.callgrind_requests.max(1);
    let dashboard = |port| {
        Target::get(addr(port), "/v1/dashboard")
            .header("authorization", &format!("Bearer {}", b.user_token))
            .header("accept-encoding", "br")
    };
    let mobile = b.bin.join("bff-mobile");
    // The floor answers a constant body of the dashboard's size (identity).
    let identity = Target::get(addr(PORT), "/v1/dashboard")
        .header("authorization", &format!("Bearer {}", b.user_token));
    let (bff, size) = count(
        &b.plan,
        "bff-mobile",
        &mobile,
        &[],
        &bff_env(PORT),
        "/readyz",
        &dashboard(PORT),
        n,
        Some(&identity),
    )
    .await?;
    let (floor, size) = match size {
        Some(size) if size > 0 => {
            let mut floor_args = vec![addr(PORT).to_string(), size.to_string()];
            floor_args.extend(
                b.upstreams
                    .iter()
                    .map(|t| format!("http://{}{}", t.addr, t.path)),
            );
            let floor_args: Vec<&str> = floor_args.iter().map(String::as_str).collect();
            let target = Target::get(addr(PORT), "/v1/dashboard");
            let (floor, _) = count(
                &b.plan,
                "io-floor",
                &b.bin.join("io-floor"),
                &floor_args,
                &[],
                "/",
                &target,
                n,
                None,
            )
            .await?;
            (floor, size)
        }
        _ => {
            return Err(
                "scenario 12: the dashboard could not be fetched to size the floor's body".into(),
            );
        }
    };
    b.notes.push(format!(
        "Scenario 12: instructions per dashboard under callgrind ({n} after {WARM_UP}): bff-mobile {bff}, I/O floor {floor} ({size} B body): {:.2}× the floor",
        bff as f64 / floor.max(1) as f64
    ));
    if let Some(other) = &b.args.compare_with {
        let (compared, _) = count(
            &b.plan,
            "bff-mobile (compared build)",
            other,
            &[],
            &bff_env(PORT),
            "/readyz",
            &dashboard(PORT),
            n,
            None,
        )
        .await?;
        b.notes.push(format!(
            "Scenario 12: this build ÷ {}: {:.4}× ({bff} vs {compared} instructions per dashboard)",
            other.display(),
            bff as f64 / compared.max(1) as f64
        ));
    }
    Ok(())
}

/// Instructions per request of `target` on `program` (started with
/// `args` and `env` under callgrind, ready when `ready` answers 200), and
/// the size of `probe`'s body, fetched before counting.
#[allow(clippy::too_many_arguments)]
async fn count(
    plan: &Plan,
    name: &str,
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    ready: &str,
    target: &Target,
    n: usize,
    probe: Option<&Target>,
) -> Result<(u64, Option<usize>), String> {
    let out = out_file(name);
    let out_arg = format!("--callgrind-out-file={}", out.display());
    let program_arg = program.display().to_string();
    let mut valgrind_args = vec![
        "--tool=callgrind",
        "--instr-atstart=no",
        out_arg.as_str(),
        program_arg.as_str(),
    ];
    valgrind_args.extend_from_slice(args);
    let mut proc = Proc::spawn(
        name,
        Path::new("valgrind"),
        &valgrind_args,
        env,
        plan.bff_cpu,
    )?;
    let result = async {
        wait_http(PORT, ready, name).await?;
        load::sequential(target, WARM_UP).await?;
        let size = match probe {
            Some(probe) => Some(load::fetch(probe).await?.1.len()),
            None => None,
        };
        instrument(proc.pid(), "on")?;
        load::sequential(target, n).await?;
        instrument(proc.pid(), "off")?;
        Ok::<_, String>(size)
    }
    .await;
    proc.stop();
    let size = result?;
    let total = totals(&out);
    if std::env::var_os("LOADTEST_KEEP_CALLGRIND").is_none() {
        let _ = std::fs::remove_file(&out);
    }
    let total = total.map_err(|e| format!("{name}: {e}"))?;
    Ok((total / n as u64, size))
}

fn out_file(name: &str) -> PathBuf {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::env::temp_dir().join(format!("loadtest-{}-{slug}.callgrind", std::process::id()))
}

fn instrument(pid: u32, state: &str) -> Result<(), String> {
    let status = Command::new("callgrind_control")
        .args(["-i", state, &pid.to_string()])
        .output()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if status.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control -i {state} {pid}: {}",
            String::from_utf8_lossy(&status.stderr)
        ))
    }
}

/// The instructions counted, from the `totals:` line of callgrind's output
/// (its `summary:` line, written before the counts, says 0 when counting
/// started switched off).
fn totals(out: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(out)
        .map_err(|e| format!("no callgrind output ({}): {e}", out.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no totals in {}", out.display()))?;
    if total == 0 {
        return Err(format!("callgrind counted nothing ({})", out.display()));
    }
    Ok(total)
}
