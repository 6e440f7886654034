//! The OpenAPI 3.1 document of a BFF, at `GET /openapi.json`.
//!
//! Each BFF documents its own routes where it declares them (`utoipa`
//! annotations, registered through `utoipa_axum`'s router, so a route cannot
//! be served without being documented). What every route shares is added
//! here, once, so it cannot be forgotten on one: the bearer scheme, the
//! problem+json answers (400, 401, 403, 429, 500, 503) with their problem
//! schema, the rate-limit and request-id headers, and the `X-Request-Id`
//! and `Prefer` request headers.

use axum::Router;
use axum::body::Bytes;
use axum::response::IntoResponse;
use axum::routing::get;
use bff_ratelimit::Cost;
use http::{HeaderValue, header};
use serde_json::{Map, Value, json};

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The shared errors: status, component name, description.
const ERRORS: [(&str, &str, &str); 6] = [
    (
        "400",
        "BadRequest",
        "The request is invalid; `errors` names each bad field.",
    ),
    (
        "401",
        "Unauthorized",
        "No valid bearer token. RFC 6750 challenge: `WWW-Authenticate: Bearer realm=\"…\"` without credentials, with `error=\"invalid_token\", error_description=\"…\"` for a refused token.",
    ),
    (
        "403",
        "Forbidden",
        "The token lacks a scope this operation requires (`WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"…\"`).",
    ),
    (
        "429",
        "TooManyRequests",
        "Over the caller's quota: problem type `https://iana.org/assignments/http-problem-types#quota-exceeded` with `violated-policies`, and `Retry-After`.",
    ),
    (
        "500",
        "InternalError",
        "An unexpected failure; the request id identifies it in the logs.",
    ),
    (
        "503",
        "Unavailable",
        "The data this answer needs is unavailable (or the client preferred `handling=strict` and a section failed); see `Retry-After`.",
    ),
];

fn components() -> Value {
    let mut responses = Map::new();
    for (status, name, description) in ERRORS {
        let mut headers =
            json!({ "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" } });
        if matches!(status, "429" | "503") {
            headers["Retry-After"] = json!({ "$ref": "#/components/headers/Retry-After" });
        }
        if status == "429" {
            headers["RateLimit"] = json!({ "$ref": "#/components/headers/RateLimit" });
            headers["RateLimit-Policy"] =
                json!({ "$ref": "#/components/headers/RateLimit-Policy" });
        }
        responses.insert(
            name.to_owned(),
            json!({
                "description": description,
                "headers": headers,
                "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
            }),
        );
    }
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token of the identity provider, for this BFF's audience. Its `tier` claim (`free`, `standard`, `premium`) chooses the rate limit."
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": { "type": "string", "description": "`urn:problem-type:bff:{code}`, or a registered problem type" },
                    "title": { "type": "string" },
                    "status": { "type": "integer", "format": "int32" },
                    "detail": { "type": "string" },
                    "code": { "type": "string", "description": "A stable machine-readable code" },
                    "requestId": { "type": "string" },
                    "traceId": { "type": "string" },
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": { "field": { "type": "string" }, "message": { "type": "string" } }
                        }
                    },
                    "violated-policies": { "type": "array", "items": { "type": "string" } }
                }
            }
        },
        "headers": {
            "X-Request-Id": { "description": "The request id (the client's when valid, else generated).", "schema": { "type": "string" } },
            "Retry-After": { "description": "Seconds to wait before retrying.", "schema": { "type": "integer" } },
            "RateLimit": { "description": "draft-ietf-httpapi-ratelimit-headers-11: `\"tier\";r=remaining;t=seconds`.", "schema": { "type": "string" } },
            "RateLimit-Policy": { "description": "draft-ietf-httpapi-ratelimit-headers-11: `\"tier\";q=quota;w=window`.", "schema": { "type": "string" } },
            "Cache-Control": { "description": "`private` when the answer holds per-user data, `max-age` the freshness left, `no-store` for a partial answer.", "schema": { "type": "string" } }
        },
        "responses": responses
    })
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        for (key, value) in extra {
            match target.get_mut(&key) {
                Some(existing) if existing.is_object() && value.is_object() => {
                    merge(existing, value)
                }
                Some(_) => {}
                None => {
                    target.insert(key, value);
                }
            }
        }
    }
}

fn finish_operation(operation: &mut Value, cost: Option<&Cost>) {
    if operation.get("security").is_none() {
        operation["security"] = json!([{ "bearer": [] }]);
    }
    let parameters = operation
        .as_object_mut()
        .map(|o| o.entry("parameters").or_insert_with(|| json!([])));
    if let Some(Value::Array(parameters)) = parameters {
        for (name, description) in [
            (
                "X-Request-Id",
                "Your request id (1–128 of letters, digits and `-_.:`); generated when absent or invalid.",
            ),
            (
                "Prefer",
                "`handling=strict`: a 503 naming the failed sections instead of a partial answer (RFC 7240).",
            ),
        ] {
            if !parameters.iter().any(|p| p["name"] == name) {
                parameters.push(json!({
                    "name": name, "in": "header", "required": false,
                    "description": description, "schema": { "type": "string" }
                }));
            }
        }
    }
    let responses = &mut operation["responses"];
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            let is_error = status.starts_with('4') || status.starts_with('5');
            if is_error && response.get("$ref").is_none() && response.get("content").is_none() {
                response["content"] = json!({ "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" }
                }});
            }
            if status.starts_with('2') || status == "304" {
                merge(
                    response,
                    json!({ "headers": {
                        "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" },
                        "RateLimit": { "$ref": "#/components/headers/RateLimit" },
                        "RateLimit-Policy": { "$ref": "#/components/headers/RateLimit-Policy" },
                        "Cache-Control": { "$ref": "#/components/headers/Cache-Control" }
                    }}),
                );
                if cost.is_some() && status.starts_with('2') {
                    merge(
                        response,
                        json!({ "headers": {
                            "Request-Cost": { "$ref": "#/components/headers/Request-Cost" }
                        }}),
                    );
                }
            }
        }
        for (status, name, _) in ERRORS {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
        }
    }
}

/// The document of `name`'s routes, with what they all share.
pub fn document(
    doc: utoipa::openapi::OpenApi,
    name: &str,
    version: &str,
    description: &str,
) -> Value {
    document_charging(doc, name, version, description, None)
}

/// [`document`] of a BFF that charges its requests `cost`
/// ([`crate::EdgeBuilder::charging`]): every answer names its cost
/// (`Request-Cost`), and the quota fields count in the cost's unit.
pub fn document_charging(
    doc: utoipa::openapi::OpenApi,
    name: &str,
    version: &str,
    description: &str,
    cost: Option<&Cost>,
) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({ "paths": {} }));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": name,
        "version": version,
        "description": description,
        "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
    });
    if doc.get("components").is_none() {
        doc["components"] = json!({});
    }
    if let Some(cost) = cost {
        let unit = cost.unit;
        merge(
            &mut doc["components"],
            json!({ "headers": {
                "Request-Cost": {
                    "description": format!("The {unit} this request was charged to your quota: one per {} it asks for. A request costing more than is left of the quota is refused whole (429, `quota-exceeded`).", unit.trim_end_matches('s')),
                    "schema": { "type": "integer", "minimum": 1 }
                },
                "RateLimit": { "description": format!("draft-ietf-httpapi-ratelimit-headers-11: `\"tier\";r=remaining;t=seconds`, remaining in {unit}."), "schema": { "type": "string" } },
                "RateLimit-Policy": { "description": format!("draft-ietf-httpapi-ratelimit-headers-11: `\"tier\";q=quota;qu=\"{unit}\";w=window`: the quota is counted in {unit}."), "schema": { "type": "string" } }
            }}),
        );
    }
    merge(&mut doc["components"], components());
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for method in METHODS {
                if let Some(operation) = item.get_mut(method) {
                    finish_operation(operation, cost);
                }
            }
        }
    }
    doc
}

/// `GET /openapi.json` serving `document` (rendered once).
pub(crate) fn router(document: &Value) -> Router {
    let body = Bytes::from(serde_json::to_vec(document).unwrap_or_default());
    Router::new().route(
        PATH,
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}
