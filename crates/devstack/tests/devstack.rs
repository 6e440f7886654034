//! The devstack binary: serves on the contract's ports, and fails clearly
//! when one is taken. One test function, because both parts need the fixed
//! ports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn devstack() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devstack"));
    cmd.arg("--upstreams-only")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn");
    cmd
}

#[test]
fn serves_on_the_contract_ports_and_refuses_a_taken_port() {
    // A taken port: a clear message and a non-zero exit.
    let guard = std::net::TcpListener::bind("127.0.0.1:7003");
    let output = devstack().output().expect("devstack runs");
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

    // Free ports: the banner, then every service answers.
    let started = Instant::now();
    let mut child = devstack()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("devstack runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("BFFs not started") {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "serving within seconds"
    );
    assert!(banner.contains("http://127.0.0.1:7001"), "{banner}");
    assert!(
        banner.contains("curl -s -X POST http://127.0.0.1:7000/oauth/token"),
        "{banner}"
    );
    for port in [7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 7099] {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/healthz"),
            ])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&status.stdout),
            "200",
            "port {port}"
        );
    }

    // SIGTERM: a clean exit.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "devstack did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
