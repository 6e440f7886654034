//! Calls shared between concurrent requests, counted where it matters: at
//! the upstream (the control API's `/stats`).

use std::time::Duration;

use bff_clients::{PricingClient, ProductClient, UserClient, upstreams};
use bff_upstream::{CallContext, Registry, UpstreamPolicy, UpstreamSettings};
use demo_services::{DemoStack, ServiceName};
use serde_json::json;

fn registry(stack: &DemoStack) -> Registry {
    let settings: Vec<UpstreamSettings> = [
        (upstreams::USER, ServiceName::User),
        (upstreams::PRODUCT, ServiceName::Product),
        (upstreams::PRICING, ServiceName::Pricing),
    ]
    .into_iter()
    .map(|(decl, service)| UpstreamSettings {
        decl,
        url: stack.url(service).parse().expect("url"),
        policy: UpstreamPolicy {
            max_concurrency: 2_000,
            ..UpstreamPolicy::default()
        },
    })
    .collect();
    Registry::build(&settings, Duration::from_secs(1)).expect("registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_reads_make_at_most_two_upstream_calls() {
    let stack = testkit::start_demo().await;
    let users = UserClient::new(&registry(&stack)).expect("declared");
    let id = stack.data().users()[5].id;
    // Slow enough that every read arrives while the first is in flight.
    testkit::set_fault(&stack, "user", json!({ "latency_ms": 300 })).await;
    stack.stats().reset();
    let ctx = CallContext::detached();
    let reads = (0..1_000).map(|_| {
        let users = users.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move { users.get(&ctx, id).await })
    });
    let results = futures::future::join_all(reads).await;
    for r in results {
        assert_eq!(r.expect("task").expect("read").id, id);
    }
    let calls = stack
        .stats()
        .count(ServiceName::User, "GET /users/{user_id}");
    assert!(
        (1..=2).contains(&calls),
        "{calls} upstream calls for 1,000 reads"
    );

    // Another user's read is never answered with this one's data.
    let other = stack.data().users()[6].id;
    let (a, b) = tokio::join!(users.get(&ctx, id), users.get(&ctx, other));
    assert_eq!((a.expect("a").id, b.expect("b").id), (id, other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_single_loads_make_one_batch_call() {
    let stack = testkit::start_demo().await;
    let registry = registry(&stack);
    // A window long enough for a debug build to issue fifty loads in it.
    let window = Duration::from_millis(50);
    let products = ProductClient::with_batch_window(&registry, window).expect("declared");
    let prices = PricingClient::with_batch_window(&registry, window).expect("declared");
    stack.stats().reset();
    let ctx = CallContext::detached();
    let ids: Vec<_> = stack.data().products()[..50].iter().map(|p| p.id).collect();
    let loads = ids.iter().map(|&id| {
        let (products, prices, ctx) = (products.clone(), prices.clone(), ctx.clone());
        tokio::spawn(async move {
            let (p, pr) = tokio::join!(products.load(&ctx, id), prices.load(&ctx, id));
            (id, p, pr)
        })
    });
    for r in futures::future::join_all(loads).await {
        let (id, product, price) = r.expect("task");
        assert_eq!(product.expect("product").id, id);
        assert_eq!(price.expect("price").product_id, id);
    }
    assert_eq!(
        stack.stats().count(
            ServiceName::Product,
            "/catalog.v1.ProductService/BatchGetProducts"
        ),
        1
    );
    assert_eq!(
        stack.stats().count(
            ServiceName::Product,
            "/catalog.v1.ProductService/GetProduct"
        ),
        0
    );
    assert_eq!(
        stack.stats().count(ServiceName::Pricing, "POST /graphql"),
        1
    );

    // An id the service does not know is a not-found of its own, not a
    // failure of the batch.
    let unknown = uuid::Uuid::new_v4();
    let (known, missing) = tokio::join!(products.load(&ctx, ids[0]), products.load(&ctx, unknown));
    assert!(known.is_ok());
    assert_eq!(
        missing.expect_err("unknown").failure,
        bff_upstream::Failure::NotFound
    );
}
