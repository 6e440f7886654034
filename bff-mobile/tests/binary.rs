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
