//! bff-web's contracts with the services it calls over HTTP (user, order,
//! recommendation, review, and pricing over GraphQL), written to
//! `contracts/pacts/` and verified against the services by
//! `crates/contracts`. Product and inventory (gRPC) are the demo services
//! themselves; their contract is the `.proto` files (`contracts/proto/`).
//!
//! The BFF's real app and clients run against Pact mock servers; every
//! route it serves is exercised, every interaction must happen and nothing
//! else may reach the mocks, and every client operation its metrics show
//! must have an interaction of its own.

use bff_clients::models::{Price, ReviewPage};
use contracts::{Providers, UUID, examples, pact, shape, through};
use pact_consumer::prelude::*;
use serde_json::{Value, json};
use testkit::live::{LiveClient, Transport};

const CONSUMER: &str = "bff-web";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_web_reads_what_its_pacts_say() {
    let stack = testkit::start_demo().await;
    let data = stack.data();
    let user = &data.users()[0];
    let id = user.id.to_string();
    let reviewed = data
        .products()
        .iter()
        .find(|p| data.reviews_of(&p.id).is_some_and(|r| r.len() >= 5))
        .expect("a product with reviews");
    let unreviewed = data
        .products()
        .iter()
        .find(|p| data.reviews_of(&p.id).is_some_and(<[_]>::is_empty))
        .expect("a product without reviews");
    let (product, quiet) = (reviewed.id.to_string(), unreviewed.id.to_string());

    let profile = examples::profile(data, user.id);
    let orders = examples::latest_orders(data, user.id, 5);
    let picks = examples::best_picks(data, user.id, 10);
    let reviews = data.reviews_of(&reviewed.id).expect("reviews");
    let reviews = through::<ReviewPage>(json!({
        "average_rating": reviewed.rating_average,
        "total": reviews.len(),
        "reviews": &reviews[..5],
    }));
    let no_reviews = through::<ReviewPage>(json!({
        "average_rating": 0.0, "total": 0, "reviews": []
    }));
    let price = through::<Price>(json!({
        "productId": product, "current": 1999, "original": 2499, "currency": "EUR", "discount": 20.0
    }));
    let user_exists = json!({ "userId": id });

    let mut users = pact(CONSUMER, "user");
    users.interaction("get_user: the profile of a user", "", |mut i| {
        i.given_with_params("a user exists", &user_exists);
        i.request.get().path(format!("/users/{id}"));
        i.response
            .ok()
            .content_type("application/json")
            .json_body(shape(&profile));
        i
    });
    let mut order = pact(CONSUMER, "order");
    order.interaction("list_orders: a user's five latest orders", "", |mut i| {
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
    });
    let mut recommendation = pact(CONSUMER, "recommendation");
    recommendation.interaction(
        "list_recommendations: a user's ten best picks",
        "",
        |mut i| {
            i.given_with_params("a user exists with recommendations", &user_exists);
            i.request
                .get()
                .path("/recommendations")
                .query_param("user_id", id.as_str())
                .query_param("limit", "10");
            i.response
                .ok()
                .content_type("application/json")
                .json_body(shape(&picks));
            i
        },
    );
    let mut review = pact(CONSUMER, "review");
    review
        .interaction(
            "list_reviews: a product's five latest reviews",
            "",
            |mut i| {
                i.given_with_params(
                    "a product exists with reviews",
                    &json!({ "productId": product }),
                );
                i.request
                    .get()
                    .path("/reviews")
                    .query_param("product_id", product.as_str())
                    .query_param("limit", "5");
                i.response
                    .ok()
                    .content_type("application/json")
                    .json_body(shape(&reviews));
                i
            },
        )
        .interaction(
            "list_reviews: a product nobody has reviewed",
            "",
            |mut i| {
                i.given_with_params("a product has no reviews", &json!({ "productId": quiet }));
                i.request
                    .get()
                    .path("/reviews")
                    .query_param("product_id", quiet.as_str())
                    .query_param("limit", "5");
                i.response
                    .ok()
                    .content_type("application/json")
                    .json_body(shape(&no_reviews));
                i
            },
        );
    let mut pricing = pact(CONSUMER, "pricing");
    pricing.interaction("pricings: the prices of products", "", |mut i| {
        i.given_with_params("products exist", &json!({ "productIds": [product] }));
        i.request
            .post()
            .path("/graphql")
            .content_type("application/json")
            .json_body(json_pattern!({
                "query": bff_clients::PRICES_QUERY,
                "variables": { "ids": each_like!(term!(UUID, product.as_str())) },
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
    });
    let providers = Providers::start(
        CONSUMER,
        bff_web::SPEC.upstreams,
        vec![
            ("user", users),
            ("order", order),
            ("recommendation", recommendation),
            ("review", review),
            ("pricing", pricing),
        ],
    );

    let jwks = testkit::JwksServer::start().await;
    let env = providers.bff_env(&jwks.jwks_url(), testkit::TEST_ISSUER, true);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = testkit::start_bff(
        testkit::bff_config_with(&stack, bff_web::SPEC, &env),
        bff_web::app,
    )
    .await;
    let http = reqwest::Client::new();
    let token = jwks.mint(&testkit::TestClaims::new(
        CONSUMER,
        &id,
        "profile orders live",
    ));
    let get = |path: String| {
        let request = http.get(server.url(&path)).bearer_auth(&token);
        async move { request.send().await.expect("a response") }
    };

    let mut exercised = std::collections::BTreeSet::new();
    let dashboard = get("/v1/dashboard".into()).await;
    assert_eq!(dashboard.status(), 200);
    let body: Value = dashboard.json().await.expect("JSON");
    assert_eq!(body["metadata"]["partialFailures"], 0, "{body}");
    exercised.insert("/v1/dashboard".to_owned());

    let page = get(format!("/v1/products/{product}")).await;
    assert_eq!(page.status(), 200);
    let body: Value = page.json().await.expect("JSON");
    assert_eq!(body["metadata"]["partialFailures"], 0, "{body}");
    assert!(
        body["reviews"]["items"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let page = get(format!("/v1/products/{quiet}?includeInventory=false")).await;
    assert_eq!(page.status(), 200);
    // Reviews not asked for are not fetched.
    let page = get(format!("/v1/products/{product}?includeReviews=false")).await;
    assert_eq!(page.status(), 200);
    exercised.insert("/v1/products/{product_id}".to_owned());

    let mut live = LiveClient::open(
        Transport::Sse,
        &server.url(&format!("/v1/products/{product}/live")),
        &token,
        None,
    )
    .await
    .expect("a live stream");
    let snapshot = live
        .wait_for("snapshot", std::time::Duration::from_secs(5), |_| true)
        .await
        .expect("a snapshot");
    assert!(snapshot.data["pricing"].is_object(), "{:?}", snapshot.data);
    drop(live);
    exercised.insert("/v1/products/{product_id}/live".to_owned());

    contracts::finish(CONSUMER, &server.url(""), &exercised, providers).await;
}
