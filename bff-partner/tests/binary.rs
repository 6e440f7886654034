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
