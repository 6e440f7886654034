//! The layout experiment (flag `dashboard-layout`): everyone on `full`
//! as shipped, a user's variant sticky across replicas, evaluations
//! counted by variant.

use demo_services::DemoStack;
use serde_json::Value;
use testkit::TestServer;

async fn mobile(stack: &DemoStack, extra: &[(&str, &str)]) -> TestServer {
    let config = testkit::bff_config_with(stack, bff_mobile::SPEC, extra);
    testkit::start_bff(config, bff_mobile::app).await
}

async fn orders_shown(server: &TestServer, token: &str) -> usize {
    let body: Value = reqwest::Client::new()
        .get(server.url("/v1/dashboard"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    body["recentOrders"].as_array().expect("orders").len()
}

#[tokio::test]
async fn the_layout_flag_decides_how_many_orders_a_user_sees() {
    let stack = testkit::start_demo().await;
    // Users with at least five orders, so the layouts differ.
    let users: Vec<_> = stack
        .data()
        .users()
        .iter()
        .filter(|u| stack.data().orders_of(&u.id).is_some_and(|o| o.len() >= 5))
        .take(12)
        .collect();
    assert!(users.len() >= 8, "the demo world has users with 5 orders");
    let tokens: Vec<String> = users
        .iter()
        .map(|u| testkit::user_token(&stack, &u.username, "bff-mobile", None))
        .collect();

    let shipped = mobile(&stack, &[]).await;
    for token in &tokens {
        assert_eq!(orders_shown(&shipped, token).await, 5, "everyone on full");
    }

    // Half and half: two replicas give each user the same layout, and both
    // layouts are seen.
    let split = [("BFF_FLAG_DASHBOARD_LAYOUT", "full:50,compact:50")];
    let (a, b) = (mobile(&stack, &split).await, mobile(&stack, &split).await);
    let mut seen = Vec::new();
    for token in &tokens {
        let on_a = orders_shown(&a, token).await;
        assert!(on_a == 5 || on_a == 3, "{on_a}");
        assert_eq!(
            orders_shown(&b, token).await,
            on_a,
            "sticky across replicas"
        );
        assert_eq!(
            orders_shown(&a, token).await,
            on_a,
            "sticky across requests"
        );
        seen.push(on_a);
    }
    assert!(seen.contains(&3) && seen.contains(&5), "{seen:?}");

    // Every variant's series exists from start-up, and each evaluation was
    // counted (the replicas of this test share the process's registry:
    // the shipped one evaluated once per user, a twice and b once).
    let metrics = a.get_text("/metrics").await;
    for variant in ["full", "compact"] {
        let series = format!(
            r#"bff_flag_evaluations_total{{bff="bff-mobile",flag="dashboard-layout",variant="{variant}"}} "#
        );
        let count: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series}"));
        let shown = if variant == "full" { 5 } else { 3 };
        let mut expected = 3 * seen.iter().filter(|s| **s == shown).count();
        if variant == "full" {
            expected += tokens.len();
        }
        assert_eq!(count as usize, expected, "{variant} evaluations");
    }
}
