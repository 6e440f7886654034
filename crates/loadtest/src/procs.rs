//! The processes under test: spawned (pinned to a CPU when `taskset` is
//! there), measured from the kernel's own accounting, stopped with SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process under test; SIGTERM then kill on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins this process (all its threads) to `cpu` when there is more than one
/// CPU and `taskset` is installed.
pub fn pin_self(cpu: usize) {
    if cpus() >= 2 && has_taskset() {
        let _ = Command::new("taskset")
            .args([
                "-a",
                "-p",
                "-c",
                &cpu.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
}

/// CPUs this harness may use, as seen before it pinned itself.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Clock ticks per second of `/proc` CPU times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0)
}

impl Proc {
    /// Starts `program` (on CPU `cpu` when given and possible) with `env`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        cpu: Option<usize>,
    ) -> Result<Self, String> {
        let mut cmd = match cpu.filter(|_| has_taskset()) {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time used so far.
    pub fn cpu_time(&self) -> Result<Duration, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_err(|e| format!("{}: {e}", self.name))?;
        // Fields after the command name (which may contain spaces) start
        // after the last ')'; utime and stime are the 12th and 13th of them.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or("malformed /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        Ok(Duration::from_secs_f64(ticks / clock_ticks()))
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("{}: {e}", self.name))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{}: no VmRSS", self.name))
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to 10 s for a clean exit; its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.stop();
        }
    }
}

/// A `perf record` of one process, made into a flame graph when finished
/// (`--perf DIR`): perf samples the call stacks (DWARF unwinding, so
/// frames of code built without frame pointers are kept), inferno folds
/// and draws them.
#[derive(Debug)]
pub struct Profile {
    perf: Child,
    data: std::path::PathBuf,
    svg: std::path::PathBuf,
    title: String,
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Profile {
    /// Starts sampling `pid`; the flame graph will be `svg`.
    pub fn start(pid: u32, svg: &Path, title: &str) -> Result<Self, String> {
        if !installed("perf") {
            return Err("--perf needs `perf` (linux-perf / linux-tools)".into());
        }
        if !installed("inferno-flamegraph") {
            return Err("--perf needs inferno (cargo install inferno)".into());
        }
        let data = svg.with_extension("perf.data");
        let perf = Command::new("perf")
            .args([
                "record",
                "-F",
                "997",
                "--call-graph",
                "dwarf,16384",
                "-q",
                "-o",
            ])
            .arg(&data)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start perf: {e}"))?;
        Ok(Profile {
            perf,
            data,
            svg: svg.to_owned(),
            title: title.to_owned(),
        })
    }

    /// Stops sampling and draws the flame graph.
    pub fn finish(mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status();
        let _ = self.perf.wait();
        // The folded stacks are kept beside the graph (to sum by frame).
        let folded = self.svg.with_extension("folded");
        let script = format!(
            "perf script -i '{data}' 2>/dev/null | inferno-collapse-perf > '{folded}' && inferno-flamegraph --minwidth 0.2 --title '{title}' < '{folded}' > '{svg}'",
            data = self.data.display(),
            folded = folded.display(),
            title = self.title.replace('\'', ""),
            svg = self.svg.display()
        );
        let status = Command::new("sh")
            .args(["-c", &script])
            .status()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let _ = std::fs::remove_file(&self.data);
        if !status.success() {
            return Err(format!("drawing {} failed", self.svg.display()));
        }
        Ok(())
    }
}
