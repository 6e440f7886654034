//! bff-partner's contract with the pricing service (GraphQL, batched),
//! written to `contracts/pacts/` and verified against the service by
//! `crates/contracts`. Product and inventory (gRPC) are the demo services
//! themselves; their contract is the `.proto` files (`contracts/proto/`).
//!
//! The BFF's real app and clients run against a Pact mock server; every
//! route it serves is exercised, every interaction must happen and nothing
//! else may reach the mock, and every client operation its metrics show
//! must have an interaction of its own.

use bff_clients::models::Price;
use contracts::{Providers, UUID, pact, shape, through};
use pact_consumer::prelude::*;
use serde_json::{Value, json};

const CONSUMER: &str = "bff-partner";
/// No demo product has this id: partners get it listed as missing.
const UNKNOWN_PRODUCT: &str = "00000000-0000-4000-8000-0000000000aa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_partner_reads_what_its_pact_says() {
    let stack = testkit::start_demo().await;
    let data = stack.data();
    let ids: Vec<String> = data.products()[..3]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    let price = through::<Price>(json!({
        "productId": ids[0], "current": 1999, "original": 2499, "currency": "EUR", "discount": 20.0
    }));

    let mut pricing = pact(CONSUMER, "pricing");
    pricing.interaction(
        "pricings: the prices of a batch of products",
        "",
        |mut i| {
            i.given_with_params("products exist", &json!({ "productIds": ids }));
            i.request
                .post()
                .path("/graphql")
                .content_type("application/json")
                .json_body(json_pattern!({
                    "query": bff_clients::PRICES_QUERY,
                    "variables": { "ids": each_like!(term!(UUID, ids[0].as_str())) },
                }));
            // GraphQL over HTTP: either media type is JSON to the client.
            i.response
                .ok()
                .header(
                    "content-type",
                    term!(
                        r"^application/(graphql-response\+)?json",
                        "application/graphql-response+json"
                    ),
                )
                .json_body(shape(&json!({ "data": { "pricings": [price] } })));
            i
        },
    );
    let providers = Providers::start(
        CONSUMER,
        bff_partner::SPEC.upstreams,
        vec![("pricing", pricing)],
    );

    let jwks = testkit::JwksServer::start().await;
    let env = providers.bff_env(&jwks.jwks_url(), testkit::TEST_ISSUER, true);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = testkit::start_bff(
        testkit::bff_config_with(&stack, bff_partner::SPEC, &env),
        bff_partner::app,
    )
    .await;
    let http = reqwest::Client::new();
    let token = jwks.mint(&testkit::TestClaims::new(
        CONSUMER,
        "partner-acme",
        "catalog:read",
    ));
    let batch = format!("{},{UNKNOWN_PRODUCT}", ids.join(","));

    let mut exercised = std::collections::BTreeSet::new();
    for (path, version) in [
        ("/v1/products", None),
        ("/v2/products", None),
        ("/products", Some("1")),
        ("/products", None),
    ] {
        let mut request = http
            .get(server.url(&format!("{path}?ids={batch}")))
            .bearer_auth(&token);
        if let Some(version) = version {
            request = request.header("API-Version", version);
        }
        let response = request.send().await.expect("a response");
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.expect("JSON");
        assert!(
            body.to_string().contains(UNKNOWN_PRODUCT),
            "{path}: the unknown id is listed: {body}"
        );
        exercised.insert(path.to_owned());
    }
    contracts::finish(CONSUMER, &server.url(""), &exercised, providers).await;
}
