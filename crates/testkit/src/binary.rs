//! A BFF binary run as a process: SIGTERM drains it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use demo_services::{DemoStack, Fault, ServiceName};

/// Starts the BFF binary at `bin` against `stack` (its declared
/// `upstreams`), waits until it is ready, starts a request to `path` with
/// `token` that `slow` (300 ms of latency) keeps in flight, sends SIGTERM,
/// and checks that the request still completes with 200 and the process
/// exits 0.
///
/// # Panics
/// When any of that does not hold.
pub async fn check_sigterm_drains(
    bin: &str,
    stack: &DemoStack,
    upstreams: &[ServiceName],
    slow: ServiceName,
    path: &str,
    token: &str,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let identity = stack.url(ServiceName::Identity);
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("BFF_LOG_FORMAT", "json")
        .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
        .env("BFF_JWKS_URL", format!("{identity}/.well-known/jwks.json"))
        .env("BFF_ISSUER", &identity)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for service in upstreams {
        let url = match service {
            ServiceName::Pricing => format!("{}/graphql", stack.url(*service)),
            _ => stack.url(*service),
        };
        command.env(
            format!("BFF_UPSTREAM_{}", service.as_str().to_uppercase()),
            url,
        );
    }
    let mut child = command.spawn().expect("the binary runs");
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(&ready)
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "{bin} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.faults().set(
        slow,
        Fault {
            latency_ms: 300,
            ..Default::default()
        },
    );
    let in_flight = tokio::spawn({
        let (client, url, token) = (
            client.clone(),
            format!("http://127.0.0.1:{port}{path}"),
            token.to_owned(),
        );
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(
        in_flight.await.expect("task").expect("a response"),
        200,
        "the request in flight at SIGTERM finished"
    );
    let _ = stack.faults().clear(slow);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0), "{bin} exits 0 after draining");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{bin} did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
