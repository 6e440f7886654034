//! `GET /openapi.json`: valid OpenAPI 3.1 listing exactly the served routes.

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_with_every_route() {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config(&stack, bff_partner::SPEC);
    let server = testkit::start_bff(config, bff_partner::app).await;
    let doc = testkit::check_openapi(
        &server,
        &[
            ("GET", "/v1/products"),
            ("GET", "/v2/products"),
            ("GET", "/products"),
        ],
    )
    .await;
    assert_eq!(
        doc["paths"]["/v2/products"]["get"]["security"][0]["bearer"][0], "catalog:read",
        "the scope is documented"
    );
    let negotiated: Vec<&str> = doc["paths"]["/products"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(negotiated.contains(&"API-Version"), "{negotiated:?}");
    assert!(
        doc["paths"]["/v1/products"]["get"]["responses"]["200"]["headers"]["Deprecation"]
            .is_object()
    );
}
