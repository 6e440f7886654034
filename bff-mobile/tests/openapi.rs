//! `GET /openapi.json`: valid OpenAPI 3.1 listing exactly the served routes.

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_with_every_route() {
    let stack = testkit::start_demo().await;
    let config = testkit::bff_config(&stack, bff_mobile::SPEC);
    let server = testkit::start_bff(config, bff_mobile::app).await;
    let doc = testkit::check_openapi(&server, &[("GET", "/v1/dashboard")]).await;
    let operation = &doc["paths"]["/v1/dashboard"]["get"];
    let headers: Vec<&str> = operation["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for header in ["If-None-Match", "DPR", "dpr", "X-Request-Id", "Prefer"] {
        assert!(
            headers.contains(&header),
            "{header} documented: {headers:?}"
        );
    }
    assert!(operation["responses"]["304"].is_object());
    assert!(
        doc.pointer("/components/schemas/Dashboard/properties/metadata")
            .is_some(),
        "the response schema is generated from the code"
    );
}
