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

    // `dpr`'s documented range is the handler's.
    let dpr = operation["parameters"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "dpr"))
        .expect("dpr");
    let schema = serde_json::to_string(&dpr["schema"]).expect("json");
    assert!(
        schema.contains(r#""minimum":1"#) && schema.contains(r#""maximum":4"#),
        "{schema}"
    );
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    for (value, expected) in [
        ("1", 200),
        ("4", 200),
        ("2.5", 200),
        ("0.99", 400),
        ("4.01", 400),
        ("x", 400),
    ] {
        let status = reqwest::Client::new()
            .get(server.url(&format!("/v1/dashboard?dpr={value}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, expected, "dpr={value}");
    }
}
