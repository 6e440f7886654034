//! bff-mobile's contracts with the services it calls over HTTP (user, order,
//! recommendation), written to `contracts/pacts/` and verified against the
//! services by `crates/contracts`.
//!
//! The BFF's real app and clients run against Pact mock servers; every
//! route it serves is exercised, every interaction must happen and nothing
//! else may reach the mocks, and every client operation its metrics show
//! must have an interaction of its own. The examples are the demo data read
//! through the BFF's own models, so the matchers name exactly the fields it
//! reads.

use contracts::{Providers, examples, pact, shape};
use pact_consumer::prelude::*;
use serde_json::{Value, json};

const CONSUMER: &str = "bff-mobile";
/// No demo user has this id.
const UNKNOWN_USER: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_mobile_reads_what_its_pacts_say() {
    let stack = testkit::start_demo().await;
    let data = stack.data();
    let user = &data.users()[0];
    let id = user.id.to_string();

    let profile = examples::profile(data, user.id);
    let orders = examples::latest_orders(data, user.id, 5);
    let picks = examples::best_picks(data, user.id, 3);
    let not_found = |i: &mut pact_consumer::builders::InteractionBuilder| {
        i.response
            .status(404)
            .content_type("application/problem+json")
            .json_body(json_pattern!({ "status": 404, "title": like!("Not Found") }));
    };
    let user_exists = json!({ "userId": id });
    let user_unknown = json!({ "userId": UNKNOWN_USER });

    let mut users = pact(CONSUMER, "user");
    users
        .interaction("get_user: the profile of a user", "", |mut i| {
            i.given_with_params("a user exists", &user_exists);
            i.request.get().path(format!("/users/{id}"));
            i.response
                .ok()
                .content_type("application/json")
                .json_body(shape(&profile));
            i
        })
        .interaction("get_user: a user the service does not know", "", |mut i| {
            i.given_with_params("a user does not exist", &user_unknown);
            i.request.get().path(format!("/users/{UNKNOWN_USER}"));
            not_found(&mut i);
            i
        });
    let mut order = pact(CONSUMER, "order");
    order
        .interaction("list_orders: a user's five latest orders", "", |mut i| {
            i.given_with_params("a user exists with orders", &user_exists);
            i.request
                .get()
                .path("/orders")
                .query_param("user_id", id.as_str())
                .query_param("limit", "5");
            i.response
                .ok()
                .content_type("application/json")
                .json_body(shape(&orders));
            i
        })
        .interaction(
            "list_orders: the orders of a user the service does not know",
            "",
            |mut i| {
                i.given_with_params("a user does not exist", &user_unknown);
                i.request
                    .get()
                    .path("/orders")
                    .query_param("user_id", UNKNOWN_USER)
                    .query_param("limit", "5");
                not_found(&mut i);
                i
            },
        );
    let mut recommendation = pact(CONSUMER, "recommendation");
    recommendation
        .interaction(
            "list_recommendations: a user's three best picks",
            "",
            |mut i| {
                i.given_with_params("a user exists with recommendations", &user_exists);
                i.request
                    .get()
                    .path("/recommendations")
                    .query_param("user_id", id.as_str())
                    .query_param("limit", "3");
                i.response
                    .ok()
                    .content_type("application/json")
                    .json_body(shape(&picks));
                i
            },
        )
        .interaction(
            "list_recommendations: the picks of a user the service does not know",
            "",
            |mut i| {
                i.given_with_params("a user does not exist", &user_unknown);
                i.request
                    .get()
                    .path("/recommendations")
                    .query_param("user_id", UNKNOWN_USER)
                    .query_param("limit", "3");
                not_found(&mut i);
                i
            },
        );
    let providers = Providers::start(
        CONSUMER,
        bff_mobile::SPEC.upstreams,
        vec![
            ("user", users),
            ("order", order),
            ("recommendation", recommendation),
        ],
    );

    let jwks = testkit::JwksServer::start().await;
    let env = providers.bff_env(&jwks.jwks_url(), testkit::TEST_ISSUER, false);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = testkit::start_bff(
        testkit::bff_config_with(&stack, bff_mobile::SPEC, &env),
        bff_mobile::app,
    )
    .await;
    let http = reqwest::Client::new();
    let token = |sub: &str| jwks.mint(&testkit::TestClaims::new(CONSUMER, sub, "profile"));

    // Every route of the API, as a phone would call it.
    let mut exercised = std::collections::BTreeSet::new();
    let response = http
        .get(server.url("/v1/dashboard"))
        .bearer_auth(token(&id))
        .send()
        .await
        .expect("the dashboard");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["user"]["id"], id, "{body}");
    assert!(body["metadata"]["partialFailures"] == 0, "{body}");
    let response = http
        .get(server.url("/v1/dashboard"))
        .bearer_auth(token(UNKNOWN_USER))
        .send()
        .await
        .expect("the dashboard");
    assert_eq!(response.status(), 404);
    exercised.insert("/v1/dashboard".to_owned());
    contracts::finish(CONSUMER, &server.url(""), &exercised, providers).await;
}
