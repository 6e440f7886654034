//! The `bff-partner` binary: SIGTERM drains and exits 0.

use demo_services::ServiceName;

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let stack = testkit::start_demo().await;
    let token = testkit::partner_token(&stack, "partner-acme");
    let path = format!("/v2/products?ids={}", stack.data().products()[0].id);
    testkit::check_sigterm_drains(
        env!("CARGO_BIN_EXE_bff-partner"),
        &stack,
        &[
            ServiceName::Product,
            ServiceName::Pricing,
            ServiceName::Inventory,
        ],
        ServiceName::Product,
        &path,
        &token,
    )
    .await;
}

#[tokio::test]
async fn the_cache_series_of_every_declared_kind_exist_from_the_start() {
    let stack = testkit::start_demo().await;
    testkit::check_cache_series_at_start(
        env!("CARGO_BIN_EXE_bff-partner"),
        &stack,
        bff_partner::SPEC,
    )
    .await;
}
