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
            ("GET", "/v1/products/{product_id}/live"),
        ],
    )
    .await;
    assert!(doc.pointer("/components/schemas/ProductPage").is_some());
    // The BFF's own version, not the shared crates'.
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(bff_web::SPEC.version, env!("CARGO_PKG_VERSION"));

    // The live stream: SSE's media type, the WebSocket upgrade, the events.
    let live = &doc["paths"]["/v1/products/{product_id}/live"]["get"];
    let events = &live["responses"]["200"]["content"]["text/event-stream"]["schema"];
    assert_eq!(events["$ref"], "#/components/schemas/LiveEvent", "{live}");
    assert!(
        live["responses"]["101"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("WebSocket"))
    );
    assert_eq!(live["security"][0]["bearer"][0], "live");
    let kinds: Vec<&str> = doc["components"]["schemas"]["LiveEvent"]["oneOf"]
        .as_array()
        .expect("one schema per event type")
        .iter()
        .filter_map(|v| {
            // A variant is its own object, or its body's schema plus the tag.
            let parts = v["allOf"]
                .as_array()
                .map_or(vec![v], |a| a.iter().collect());
            parts
                .into_iter()
                .find_map(|p| p["properties"]["type"]["enum"][0].as_str())
        })
        .collect();
    for kind in [
        "snapshot",
        "price",
        "stock",
        "degraded",
        "recovered",
        "heartbeat",
        "end",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

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

    // The product id's schema is what the handler accepts: values the
    // pattern allows are served, the others refused with 400.
    let pattern = doc["paths"]["/v1/products/{product_id}"]["get"]["parameters"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "product_id"))
        .and_then(|p| p["schema"]["pattern"].as_str())
        .expect("a pattern");
    let pattern = regex::Regex::new(pattern).expect("regex");
    let id = stack.data().products()[0].id;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    for value in [
        id.to_string(),
        id.to_string().to_uppercase(),
        id.simple().to_string(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        format!("{id}0"),
    ] {
        let status = reqwest::Client::new()
            .get(server.url(&format!("/v1/products/{value}?includeReviews=false")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request")
            .status();
        let expected = if pattern.is_match(&value) { 200 } else { 400 };
        assert_eq!(status, expected, "{value}");
    }
}
