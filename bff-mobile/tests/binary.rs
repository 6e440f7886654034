//! The `bff-mobile` binary: configuration errors exit 2 naming the key;
//! SIGTERM drains and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bff() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bff-mobile"));
    cmd.env_clear()
        .env("BFF_LOG_FORMAT", "json")
        .stdout(Stdio::null());
    cmd
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    for (key, value) in [
        ("BFF_LISTEN", "nonsense"),
        ("BFF_UPSTREAM_USER_TIMEOUT", "soon"),
        ("BFF_JWKS_URL", "ftp://x"),
    ] {
        let out = bff().env(key, value).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    let out = bff()
        .args(["--config", "/nonexistent/bff.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = bff().arg("--bogus").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let stack = testkit::start_demo().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let identity = stack.url(demo_services::ServiceName::Identity);
    let mut child = bff()
        .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
        .env("BFF_JWKS_URL", format!("{identity}/.well-known/jwks.json"))
        .env("BFF_ISSUER", &identity)
        .env(
            "BFF_UPSTREAM_USER",
            stack.url(demo_services::ServiceName::User),
        )
        .env(
            "BFF_UPSTREAM_ORDER",
            stack.url(demo_services::ServiceName::Order),
        )
        .env(
            "BFF_UPSTREAM_RECOMMENDATION",
            stack.url(demo_services::ServiceName::Recommendation),
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
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
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A slow request in flight when SIGTERM arrives still completes.
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    stack.faults().set(
        demo_services::ServiceName::User,
        demo_services::Fault {
            latency_ms: 300,
            ..Default::default()
        },
    );
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/v1/dashboard"))
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
        slow.await.expect("task").expect("response"),
        200,
        "the in-flight request finished"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
