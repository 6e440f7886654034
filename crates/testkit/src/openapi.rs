//! Checks of a BFF's `GET /openapi.json`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::TestServer;

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Fetches the document and checks it: a valid OpenAPI 3.1 document (it
/// parses as one, and every `$ref` resolves), its operations are exactly
/// `routes` (method, path), each of them is served (401 without a token,
/// not 404), and each says how it is secured and answers errors, rate
/// limits included. Returns the document.
///
/// # Panics
/// When any of that does not hold.
pub async fn check_openapi(server: &TestServer, routes: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200, "GET /openapi.json");
    let text = response.text().await.expect("body");
    if let Err(error) = oas3::from_json(&text) {
        panic!("not a valid OpenAPI 3.1 document: {error}");
    }
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    for target in targets {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {target}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {target} resolves");
    }

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if operation.get("responses").is_some() {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| ((*m).to_lowercase(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, expected,
        "the documented operations are the routes"
    );

    let client = reqwest::Client::new();
    for (method, path) in routes {
        let operation = &doc["paths"][*path][method.to_lowercase()];
        assert!(
            operation["security"][0]["bearer"].is_array(),
            "{method} {path} says it takes a bearer token"
        );
        for status in ["200", "400", "401", "429", "503"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{method} {path} documents {status}"
            );
        }
        // Served: without a token the route answers 401, where an unknown
        // path would be a 404.
        let concrete = path.replace("{product_id}", "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
        let served = client
            .request(method.parse().expect("method"), server.url(&concrete))
            .send()
            .await
            .expect("request");
        assert_eq!(served.status(), 401, "{method} {path} is served");
    }
    doc
}
