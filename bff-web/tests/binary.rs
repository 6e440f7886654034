//! The `bff-web` binary: SIGTERM drains and exits 0.

use demo_services::ServiceName;

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let stack = testkit::start_demo().await;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    let path = format!("/v1/products/{}", stack.data().products()[0].id);
    testkit::check_sigterm_drains(
        env!("CARGO_BIN_EXE_bff-web"),
        &stack,
        &testkit::upstreams_of(bff_web::SPEC),
        ServiceName::Product,
        &path,
        &token,
    )
    .await;
}

#[tokio::test]
async fn the_cache_series_of_every_declared_kind_exist_from_the_start() {
    let stack = testkit::start_demo().await;
    testkit::check_cache_series_at_start(env!("CARGO_BIN_EXE_bff-web"), &stack, bff_web::SPEC)
        .await;
}
