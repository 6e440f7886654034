//! `GET /openapi.json`: valid OpenAPI 3.1 listing exactly the served routes.

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_with_every_route() {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config(&stack, bff_web::SPEC);
    let server = testkit::start_bff(config, bff_web::app).await;
    let doc = testkit::check_openapi(
        &server,
        &[
            ("GET", "/v1/dashboard"),
            ("GET", "/v1/products/{product_id}"),
        ],
    )
    .await;
    assert!(doc.pointer("/components/schemas/ProductPage").is_some());

    // Compressed like every other response.
    let raw = reqwest::Client::builder()
        .no_brotli()
        .no_gzip()
        .build()
        .expect("client")
        .get(server.url("/openapi.json"))
        .header("accept-encoding", "br")
        .send()
        .await
        .expect("request");
    assert_eq!(raw.headers()["content-encoding"], "br");
}
