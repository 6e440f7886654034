//! The compose stack end to end on this machine's Docker engine: images from
//! the host's binaries (the Dockerfile's `prebuilt` stage), base images made
//! offline (`deploy/offline-images`), `docker-compose.yml` with the offline
//! override and the `replicas` profile, then, through the published ports:
//! a token from the identity service opens each BFF; a price change reaches
//! both bff-web replicas; Redis stopped costs no request and its return is
//! picked up; a killed replica leaves the other serving behind the balancer;
//! spans arrive at the collector's place. `down -v` whatever happened.
//!
//! Skipped, with the reason printed, when no Docker engine answers or the
//! offline base images are missing, unless `REQUIRE_DOCKER=1` (CI), where
//! either fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::live::{LiveClient, Transport};

const BASE_IMAGES: [&str; 4] = [
    "debian:bookworm-slim",
    "bff-offline/redis:7.0",
    "bff-offline/nginx:1.22",
    "bff-offline/prometheus:2.42",
];
const BFFS: [(&str, u16); 3] = [
    ("bff-mobile", 8081),
    ("bff-web", 8082),
    ("bff-partner", 8083),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

fn succeeds(command: &mut Command) -> bool {
    run(command).status.success()
}

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !succeeds(Command::new("docker").arg("info")) {
        return Some("no Docker engine answers (docker info failed)".to_owned());
    }
    let missing: Vec<&str> = BASE_IMAGES
        .into_iter()
        .filter(|image| !succeeds(Command::new("docker").args(["image", "inspect", image])))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "the base images {missing:?} are missing: run deploy/offline-images (as root)"
        ));
    }
    None
}

/// One compose project; `down -v` when dropped, whatever happened.
struct Compose {
    project: String,
    /// `docker compose` (v2) rather than `docker-compose` (v1).
    v2: bool,
}

impl Compose {
    fn new() -> Self {
        let v2 = succeeds(Command::new("docker").args(["compose", "version"]));
        let compose = Compose {
            project: format!("bffe2e{}", std::process::id()),
            v2,
        };
        // Nothing of an earlier run may hold the ports.
        for stale in list_projects() {
            let _ = Compose { project: stale, v2 }
                .command(&["down", "-v", "--timeout", "2"])
                .output();
        }
        compose
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = if self.v2 {
            let mut c = Command::new("docker");
            c.arg("compose");
            c
        } else {
            Command::new("docker-compose")
        };
        command.current_dir(repo()).args([
            "--project-name",
            &self.project,
            "--env-file",
            "deploy/compose/offline.env",
            "--file",
            "docker-compose.yml",
            "--file",
            "deploy/compose/offline.yml",
            "--profile",
            "replicas",
        ]);
        command.args(args);
        command
    }

    /// Runs `docker compose <args>`; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let output = run(&mut self.command(args));
        assert!(
            output.status.success(),
            "compose {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service]).trim().to_owned()
    }

    /// Waits until every running container of the project is healthy.
    fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ids = self.run(&["ps", "-q"]);
            let states: Vec<(String, String)> = ids
                .split_whitespace()
                .map(|id| {
                    let out = run(Command::new("docker").args([
                        "inspect",
                        "-f",
                        "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                        id,
                    ]));
                    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    let (name, state) = text.split_once(' ').unwrap_or((&text, ""));
                    (name.to_owned(), state.to_owned())
                })
                .collect();
            if !states.is_empty() && states.iter().all(|(_, s)| s == "healthy" || s == "running") {
                return;
            }
            if Instant::now() > deadline {
                let logs = self.command(&["logs", "--tail", "30"]).output().ok();
                panic!(
                    "not healthy within {timeout:?}: {states:?}\n{}",
                    logs.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(logs) = self.command(&["logs", "--tail", "40"]).output()
        {
            eprintln!("{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "--timeout", "5"])
            .output();
    }
}

/// Projects an earlier, interrupted run of this test left behind.
fn list_projects() -> Vec<String> {
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]));
    let mut projects: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| p.starts_with("bffe2e"))
        .map(str::to_owned)
        .collect();
    projects.sort();
    projects.dedup();
    projects
}

/// The binaries cargo test built beside this test, staged for `prebuilt`.
fn stage_binaries() {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/compose-…
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("a profile name");
    let target = profile_dir.parent().expect("the target directory");
    let output = run(Command::new(repo().join("deploy/compose/stage-binaries"))
        .args(["--no-build", "--profile", profile])
        .env("CARGO_TARGET_DIR", target));
    assert!(
        output.status.success(),
        "stage-binaries: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn crate_version(dir: &str) -> String {
    let manifest = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).expect("manifest");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version of its own")
        .to_owned()
}

async fn token(http: &reqwest::Client, audience: &str) -> String {
    let form: Vec<(&str, &str)> = if audience == "bff-partner" {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "partner-acme"),
            ("client_secret", "acme-secret"),
            ("audience", audience),
        ]
    } else {
        vec![
            ("grant_type", "password"),
            ("username", "user0001"),
            ("password", demo_services::data::DEMO_PASSWORD),
            ("audience", audience),
        ]
    };
    let response = http
        .post("http://127.0.0.1:7000/oauth/token")
        .form(&form)
        .send()
        .await
        .expect("the identity service answers");
    assert_eq!(response.status(), 200, "a token for {audience}");
    let body: Value = response.json().await.expect("JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Each BFF's main endpoint, through `port` (the BFF's own, or the balancer).
fn main_endpoint(bff: &str, port: u16, product: &str) -> String {
    match bff {
        "bff-mobile" => format!("http://127.0.0.1:{port}/v1/dashboard"),
        "bff-web" => format!("http://127.0.0.1:{port}/v1/products/{product}"),
        _ => format!("http://127.0.0.1:{port}/v2/products?ids={product}"),
    }
}

async fn get_ok(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

async fn set_price(http: &reqwest::Client, product: &str, current: u64) {
    let response = http
        .put(format!("http://127.0.0.1:7099/prices/{product}"))
        .json(&serde_json::json!({ "current": current }))
        .send()
        .await
        .expect("the control API answers");
    assert!(
        response.status().is_success(),
        "PUT /prices: {}",
        response.status()
    );
}

async fn live(port: u16, product: &str, token: &str) -> LiveClient {
    let mut client = LiveClient::open(
        Transport::Sse,
        &format!("http://127.0.0.1:{port}/v1/products/{product}/live"),
        token,
        None,
    )
    .await
    .unwrap_or_else(|refused| panic!("live on :{port}: {refused:?}"));
    client
        .wait_for("snapshot", Duration::from_secs(10), |_| true)
        .await
        .unwrap_or_else(|| panic!("no snapshot on :{port}"));
    client
}

/// A price change reaches the live stream of both bff-web replicas.
async fn price_reaches_both(
    http: &reqwest::Client,
    replicas: &mut [(u16, LiveClient)],
    product: &str,
    price: u64,
    within: Duration,
) {
    set_price(http, product, price).await;
    for (port, client) in replicas.iter_mut() {
        client
            .wait_for("price", within, |d| d["current"] == price)
            .await
            .unwrap_or_else(|| {
                panic!("price {price} did not reach the replica on :{port} within {within:?}")
            });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_runs_and_survives_losing_redis_and_a_replica() {
    if let Some(reason) = unavailable() {
        if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("REQUIRE_DOCKER=1, but {reason}");
        }
        eprintln!("skipped: {reason}");
        return;
    }
    stage_binaries();
    let compose = Compose::new();
    compose.run(&["build"]);
    for (bff, _) in BFFS {
        // The image carries its BFF's own version and runs as non-root.
        let out = run(Command::new("docker").args([
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.opencontainers.image.version\"}} {{.Config.User}}",
            &format!("ghcr.io/bff-gateway/{bff}:local"),
        ]));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{} 65532:65532", crate_version(bff)),
            "{bff}'s image labels"
        );
    }
    compose.run(&["up", "-d"]);
    compose.wait_healthy(Duration::from_secs(120));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let data = demo_services::data::DemoData::generate(demo_services::data::DEFAULT_SEED);
    let product = data.products()[0].id.to_string();
    let mut tokens = Vec::new();
    for (bff, port) in BFFS {
        let token = token(&http, bff).await;
        get_ok(&http, &main_endpoint(bff, port, &product), &token).await;
        tokens.push((bff, port, token));
    }
    let web_token = tokens[1].2.clone();
    // Through the balancer too.
    get_ok(&http, &main_endpoint("bff-web", 8080, &product), &web_token).await;

    // A price change reaches both replicas (over Redis pub/sub).
    let mut replicas = vec![
        (8082, live(8082, &product, &web_token).await),
        (8182, live(8182, &product, &web_token).await),
    ];
    price_reaches_both(&http, &mut replicas, &product, 4242, Duration::from_secs(5)).await;

    // Redis stopped: not one request fails.
    compose.run(&["stop", "redis"]);
    for round in 0..10 {
        for (bff, port, token) in &tokens {
            let body = get_ok(&http, &main_endpoint(bff, *port, &product), token).await;
            assert!(body.is_object(), "{bff} round {round}");
        }
    }
    // Its return is picked up: the price feed reconnects, changes flow again.
    compose.run(&["start", "redis"]);
    compose.wait_healthy(Duration::from_secs(60));
    price_reaches_both(
        &http,
        &mut replicas,
        &product,
        4343,
        Duration::from_secs(20),
    )
    .await;

    // One replica killed: the balancer keeps serving from the other.
    drop(replicas);
    compose.run(&["kill", "bff-web-2"]);
    for _ in 0..20 {
        get_ok(&http, &main_endpoint("bff-web", 8080, &product), &web_token).await;
    }
    assert!(compose.container("bff-web").len() > 1, "bff-web still runs");

    // Spans arrived where the collector listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut spans = Value::Null;
    while Instant::now() < deadline {
        spans = http
            .get("http://127.0.0.1:4318/spans")
            .send()
            .await
            .expect("the collector's place answers")
            .json()
            .await
            .expect("JSON");
        if ["bff-mobile", "bff-web", "bff-partner", "demo-services"]
            .iter()
            .all(|s| spans[s].as_u64().unwrap_or(0) > 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for service in ["bff-mobile", "bff-web", "bff-partner", "demo-services"] {
        assert!(
            spans[service].as_u64().unwrap_or(0) > 0,
            "no spans from {service}: {spans}"
        );
    }
}
