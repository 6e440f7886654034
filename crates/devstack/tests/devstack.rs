//! The devstack binary: serves on the contract's ports, runs the BFFs, and
//! fails clearly when a port is taken. One test function, because every part
//! needs the fixed ports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn log_path(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("devstack-test-{pid}.log"))
}

/// Spawns devstack with stdout piped and stderr in a log file.
fn spawn(args: &[&str]) -> Guard {
    let log = std::env::temp_dir().join(format!("devstack-test-{}.tmp", std::process::id()));
    let file = std::fs::File::create(&log).expect("log file");
    let child = devstack(args)
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("devstack runs");
    let _ = std::fs::rename(&log, log_path(child.id()));
    Guard(Some(child))
}

fn devstack(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devstack"));
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs curl; returns the status code and the body.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_owned(), body.to_owned())
}

/// Kills the child if the test fails half-way, so the ports are freed.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(mut guard: Guard) {
    let Some(mut child) = guard.0.take() else {
        return;
    };
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(log_path(child.id())).unwrap_or_default();
            assert!(status.success(), "exit status {status}; stderr:\n{log}");
            let _ = std::fs::remove_file(log_path(child.id()));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "devstack did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads stdout up to the line starting with `last`.
fn banner(guard: &mut Guard, last: &str) -> String {
    let stdout = guard
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        banner.push_str(&line);
        banner.push('\n');
        if line.trim_start().starts_with(last) {
            break;
        }
    }
    banner
}

#[test]
fn serves_on_the_contract_ports_and_refuses_a_taken_port() {
    // A taken port: a clear message and a non-zero exit.
    let guard = std::net::TcpListener::bind("127.0.0.1:7003");
    let output = devstack(&["--upstreams-only"])
        .output()
        .expect("devstack runs");
    assert!(
        !output.status.success(),
        "devstack must fail when a port is taken"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("port 7003") && stderr.contains("already in use"),
        "stderr: {stderr}"
    );
    drop(guard);

    // Upstreams only: the banner, then every service answers.
    let started = Instant::now();
    let mut child = spawn(&["--upstreams-only"]);
    let text = banner(&mut child, "BFFs not started");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "serving within seconds"
    );
    assert!(text.contains("http://127.0.0.1:7001"), "{text}");
    assert!(
        text.contains("curl -s -X POST http://127.0.0.1:7000/oauth/token"),
        "{text}"
    );
    for port in [7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 7099] {
        assert_eq!(
            curl(&[&format!("http://127.0.0.1:{port}/healthz")]).0,
            "200",
            "port {port}"
        );
    }
    assert_eq!(
        curl(&["http://127.0.0.1:8081/healthz"]).0,
        "000",
        "no BFF with --upstreams-only"
    );
    stop(child);

    // Everything: the BFFs answer with the printed tokens.
    let mut child = spawn(&[]);
    let text = banner(&mut child, "curl -s http://127.0.0.1:8081/readyz");
    let token = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} in the banner: {text}"))
            .to_owned()
    };
    for port in [8081, 8082, 8083] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while curl(&[&format!("http://127.0.0.1:{port}/readyz")]).0 != "200" {
            assert!(Instant::now() < deadline, "BFF on {port} not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let auth = |t: &str| format!("Authorization: Bearer {t}");
    let (status, body) = curl(&[
        "-H",
        &auth(&token("MOBILE_TOKEN")),
        "http://127.0.0.1:8081/v1/dashboard",
    ]);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("\"recentOrders\""));
    let (status, body) = curl(&[
        "-H",
        &auth(&token("WEB_TOKEN")),
        "http://127.0.0.1:8082/v1/dashboard",
    ]);
    assert_eq!(status, "200", "{body}");
    let partner_line = text
        .lines()
        .find(|l| l.contains("8083/v2/products"))
        .expect("partner curl line");
    let url = partner_line.split('\'').nth(1).expect("quoted url");
    let (status, body) = curl(&["-H", &auth(&token("PARTNER_TOKEN")), url]);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("\"data\""));
    stop(child);
}
