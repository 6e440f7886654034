//! Every demo service answers as the contract says, over its real protocol.

use bff_proto::catalog::v1::product_service_client::ProductServiceClient;
use bff_proto::catalog::v1::{BatchGetProductsRequest, GetProductRequest};
use bff_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use bff_proto::inventory::v1::stock_event::Kind;
use bff_proto::inventory::v1::{BatchGetStockRequest, GetStockRequest, WatchStockRequest};
use demo_services::ServiceName;
use serde_json::{Value, json};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

#[tokio::test]
async fn rest_services_serve_rich_snake_case_payloads() {
    let stack = testkit::start_demo().await;
    let user = &stack.data().users()[0];

    let (status, body) = get_json(&format!(
        "{}/users/{}",
        stack.url(ServiceName::User),
        user.id
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], user.id.to_string());
    assert!(body["preferences"]["notifications"]["order_updates"].is_boolean());
    assert!(
        body["loyalty"]["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 8)
    );
    assert!(
        serde_json::to_vec(&body).expect("json").len() > 2_000,
        "a profile is a few KB"
    );

    let (status, body) = get_json(&format!(
        "{}/orders?user_id={}&limit=3",
        stack.url(ServiceName::Order),
        user.id
    ))
    .await;
    assert_eq!(status, 200);
    let orders = body["orders"].as_array().expect("orders");
    assert!(!orders.is_empty() && orders.len() <= 3);
    assert!(orders[0]["items"][0]["unit_price_minor"].is_u64());
    assert!(orders[0]["shipping"]["address"]["city"].is_string());
    let order_id = orders[0]["id"].as_str().expect("id");
    let (status, one) = get_json(&format!(
        "{}/orders/{order_id}",
        stack.url(ServiceName::Order)
    ))
    .await;
    assert_eq!((status, &one["id"]), (200, &orders[0]["id"]));

    let (status, body) = get_json(&format!(
        "{}/recommendations?user_id={}&limit=4",
        stack.url(ServiceName::Recommendation),
        user.id
    ))
    .await;
    assert_eq!(status, 200);
    let recs = body["recommendations"].as_array().expect("recommendations");
    assert_eq!(recs.len(), 4);
    assert!(recs[0]["score"].as_f64() >= recs[3]["score"].as_f64());

    let product = stack
        .data()
        .products()
        .iter()
        .find(|p| p.rating_count > 3)
        .expect("a reviewed product");
    let (status, body) = get_json(&format!(
        "{}/reviews?product_id={}&limit=2",
        stack.url(ServiceName::Review),
        product.id
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["reviews"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["total"], product.rating_count);
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, body) = get_json(&format!(
        "{}/reviews/summary?product_ids={},{unknown}",
        stack.url(ServiceName::Review),
        product.id
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["summaries"][0]["count"], product.rating_count);
    assert_eq!(body["missing_ids"], json!([unknown]));
}

#[tokio::test]
async fn rest_services_reject_bad_input_with_problem_json() {
    let stack = testkit::start_demo().await;
    let user = stack.data().users()[0].id;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let cases = [
        (
            format!("{}/users/not-a-uuid", stack.url(ServiceName::User)),
            400,
            Some("userId"),
        ),
        (
            format!("{}/users/{unknown}", stack.url(ServiceName::User)),
            404,
            None,
        ),
        (
            format!("{}/orders", stack.url(ServiceName::Order)),
            400,
            Some("user_id"),
        ),
        (
            format!(
                "{}/orders?user_id={user}&limit=0",
                stack.url(ServiceName::Order)
            ),
            400,
            Some("limit"),
        ),
        (
            format!(
                "{}/orders?user_id={user}&limit=abc",
                stack.url(ServiceName::Order)
            ),
            400,
            Some("limit"),
        ),
        (
            format!(
                "{}/orders?user_id={user}&offset=-1",
                stack.url(ServiceName::Order)
            ),
            400,
            Some("offset"),
        ),
        (
            format!(
                "{}/orders?user_id={user}&status=lost",
                stack.url(ServiceName::Order)
            ),
            400,
            Some("status"),
        ),
        (
            format!(
                "{}/orders?user_id={user}&colour=red",
                stack.url(ServiceName::Order)
            ),
            400,
            Some("colour"),
        ),
        (
            format!("{}/orders?user_id={unknown}", stack.url(ServiceName::Order)),
            404,
            None,
        ),
        (
            format!("{}/orders/{unknown}", stack.url(ServiceName::Order)),
            404,
            None,
        ),
        (
            format!(
                "{}/recommendations?user_id=1",
                stack.url(ServiceName::Recommendation)
            ),
            400,
            Some("user_id"),
        ),
        (
            format!(
                "{}/recommendations?user_id={user}&limit=99",
                stack.url(ServiceName::Recommendation)
            ),
            400,
            Some("limit"),
        ),
        (
            format!(
                "{}/reviews?product_id={unknown}",
                stack.url(ServiceName::Review)
            ),
            404,
            None,
        ),
        (
            format!(
                "{}/reviews/summary?product_ids=",
                stack.url(ServiceName::Review)
            ),
            400,
            Some("product_ids"),
        ),
        (
            format!("{}/nowhere", stack.url(ServiceName::User)),
            404,
            None,
        ),
    ];
    for (url, expected, field) in cases {
        let response = client().get(&url).send().await.expect("request");
        assert_eq!(response.status().as_u16(), expected, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{url} answers problem+json"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], expected);
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        if let Some(field) = field {
            assert_eq!(body["errors"][0]["field"], field, "{url}");
        }
    }
}

#[tokio::test]
async fn grpc_services_answer_with_generated_clients() {
    let stack = testkit::start_demo().await;
    let product = &stack.data().products()[3];
    let mut products = ProductServiceClient::connect(stack.url(ServiceName::Product))
        .await
        .expect("connect");
    let got = products
        .get_product(GetProductRequest {
            id: product.id.to_string(),
        })
        .await
        .expect("product")
        .into_inner();
    assert_eq!(
        (got.id.as_str(), got.name.as_str()),
        (product.id.to_string().as_str(), product.name.as_str())
    );
    assert!(got.created_at.is_some());

    let unknown = "00000000-0000-4000-8000-000000000000".to_owned();
    let status = products
        .get_product(GetProductRequest {
            id: unknown.clone(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = products
        .get_product(GetProductRequest { id: "42".into() })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let ids: Vec<String> = stack.data().products()[..50]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    let batch = products
        .batch_get_products(BatchGetProductsRequest {
            ids: [ids.clone(), vec![unknown.clone()]].concat(),
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(batch.products.len(), 50);
    assert_eq!(batch.missing_ids, vec![unknown.clone()]);
    let too_many = products
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![ids[0].clone(); 101],
        })
        .await;
    assert_eq!(
        too_many.expect_err("over the limit").code(),
        tonic::Code::InvalidArgument
    );

    let mut inventory = InventoryServiceClient::connect(stack.url(ServiceName::Inventory))
        .await
        .expect("connect");
    let stock = inventory
        .get_stock(GetStockRequest {
            product_id: ids[0].clone(),
        })
        .await
        .expect("stock")
        .into_inner();
    assert_eq!(
        stock.available,
        stock.warehouses.iter().map(|w| w.available).sum::<i64>()
    );
    let batch = inventory
        .batch_get_stock(BatchGetStockRequest {
            product_ids: vec![ids[0].clone(), unknown.clone()],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!((batch.stocks.len(), batch.missing_ids.len()), (1, 1));
}

#[tokio::test]
async fn watch_stock_streams_a_snapshot_then_changes() {
    let stack = testkit::start_demo().await;
    let product = stack.data().products()[7].id;
    let mut inventory = InventoryServiceClient::connect(stack.url(ServiceName::Inventory))
        .await
        .expect("connect");
    let mut stream = inventory
        .watch_stock(WatchStockRequest {
            product_ids: vec![product.to_string()],
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.expect("message").expect("snapshot");
    assert_eq!(first.kind, Kind::Snapshot as i32);
    let version = first.stock.as_ref().expect("stock").version;

    let response = client()
        .put(format!("{}/stock/{product}", stack.control_url()))
        .json(&json!({ "available": 42 }))
        .send()
        .await
        .expect("set stock");
    assert_eq!(response.status(), 200);

    let change = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a change within 5 s")
        .expect("message")
        .expect("change");
    assert_eq!(change.kind, Kind::Changed as i32);
    let stock = change.stock.expect("stock");
    assert_eq!((stock.available, stock.version), (42, version + 1));
}

#[tokio::test]
async fn pricing_answers_graphql_queries() {
    let stack = testkit::start_demo().await;
    let price = stack.data().initial_prices()[0].clone();
    let other = stack.data().initial_prices()[1].clone();
    let unknown = "00000000-0000-4000-8000-000000000000";
    let query = json!({
        "query": "query($id: ID!, $ids: [ID!]!) { pricing(productId: $id) { productId current original currency discount } pricings(productIds: $ids) { productId current } }",
        "variables": { "id": price.product_id, "ids": [price.product_id, other.product_id, unknown] }
    });
    let response = client()
        .post(stack.url(ServiceName::Pricing))
        .json(&query)
        .send()
        .await
        .expect("graphql");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"]["pricing"]["current"], price.current);
    assert_eq!(body["data"]["pricing"]["currency"], price.currency);
    assert_eq!(
        body["data"]["pricings"].as_array().map(Vec::len),
        Some(2),
        "the unknown id is left out"
    );

    let bad = json!({ "query": "{ pricing(productId: \"nope\") { current } }" });
    let body: Value = client()
        .post(stack.url(ServiceName::Pricing))
        .json(&bad)
        .send()
        .await
        .expect("graphql")
        .json()
        .await
        .expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("productId"))
    );
}

#[tokio::test]
async fn same_seed_serves_the_same_bytes() {
    let a = testkit::start_demo().await;
    let b = testkit::start_demo().await;
    let other = testkit::start_demo_with(demo_services::DemoConfig {
        seed: 99,
        ..demo_services::DemoConfig::ephemeral()
    })
    .await;
    let user = a.data().users()[10].id;
    let fetch = |base: String| async move {
        client()
            .get(format!("{base}/users/{user}"))
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body")
    };
    let (x, y) = (
        fetch(a.url(ServiceName::User)).await,
        fetch(b.url(ServiceName::User)).await,
    );
    assert_eq!(x, y);
    assert_eq!(
        other.data().user(&user).map(|u| u.id),
        None,
        "another seed gives other ids"
    );
}
