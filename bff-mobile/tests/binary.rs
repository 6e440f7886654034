//! The `bff-mobile` binary: configuration errors exit 2 naming the key;
//! SIGTERM drains and exits 0.

use std::process::{Command, Stdio};

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
        // A kind the mobile team does not cache (the web team's).
        ("BFF_CACHE_PRODUCT_FRESH", "30s"),
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
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    testkit::check_sigterm_drains(
        env!("CARGO_BIN_EXE_bff-mobile"),
        &stack,
        &[
            demo_services::ServiceName::User,
            demo_services::ServiceName::Order,
            demo_services::ServiceName::Recommendation,
        ],
        demo_services::ServiceName::User,
        "/v1/dashboard",
        &token,
    )
    .await;
}

/// `--health-check` (the image's HEALTHCHECK) asks the BFF configured by the
/// same environment for /readyz: 0 when it is ready, 1 naming what failed.
#[tokio::test]
async fn health_check_exits_0_only_when_the_configured_bff_is_ready() {
    let stack = testkit::start_demo().await;
    let upstreams = [
        demo_services::ServiceName::User,
        demo_services::ServiceName::Order,
        demo_services::ServiceName::Recommendation,
    ];
    let process =
        testkit::BffProcess::start(env!("CARGO_BIN_EXE_bff-mobile"), &stack, &upstreams, &[]).await;
    let listen = process
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let probe = |listen: &str| {
        bff()
            .env("BFF_LISTEN", listen)
            .arg("--health-check")
            .output()
            .expect("runs")
    };
    let ready = probe(&listen);
    assert_eq!(
        ready.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let (code, _) = process.stop().await;
    assert_eq!(code, Some(0));
    let gone = probe(&listen);
    assert_eq!(gone.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("not ready") && stderr.contains("/readyz"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_cache_series_of_every_declared_kind_exist_from_the_start() {
    let stack = testkit::start_demo().await;
    testkit::check_cache_series_at_start(
        env!("CARGO_BIN_EXE_bff-mobile"),
        &stack,
        bff_mobile::SPEC,
    )
    .await;
}
