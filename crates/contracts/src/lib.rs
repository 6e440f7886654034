//! Consumer-driven contracts between the BFFs and the domain services.
//!
//! Each BFF's tests (`<bff>/tests/contracts.rs`) run the BFF's real app, its
//! real clients, against Pact mock servers standing in for every REST and
//! GraphQL upstream it declares, and write one pact per consumer–provider
//! pair into `contracts/pacts/`. This crate's tests verify every pact there
//! against the demo services ([`tests/providers.rs`]) and hold the `.proto`
//! files to their released descriptor set ([`proto`]).
//!
//! What a BFF reads is what its models deserialise: the examples of an
//! interaction are the demo data read through the BFF's own model and
//! written back ([`shape`] turns that into matchers), so a pact names exactly
//! the fields the BFF would fail without, and nothing it ignores.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use bff_upstream::{Protocol, UpstreamDecl};
use pact_consumer::builders::PactBuilder;
use pact_consumer::mock_server::{StartMockServer, ValidatingMockServer};
use pact_consumer::patterns::{EachLike, JsonPattern, Like, Term, build_regex};
use serde_json::Value;

pub mod proto;

/// A UUID, as the services write ids.
pub const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// An RFC 3339 timestamp.
pub const TIMESTAMP: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$";
/// A calendar date.
pub const DATE: &str = r"^\d{4}-\d{2}-\d{2}$";

/// Where the pacts are written and read: `contracts/pacts/` of the workspace.
pub fn pacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts/pacts")
}

/// The provider (service) name of a BFF upstream in the pacts.
///
/// # Panics
/// For an upstream that is no domain service (a new one must be named here).
pub fn provider_of(upstream: &str) -> &'static str {
    match upstream {
        "user" => "user-service",
        "order" => "order-service",
        "recommendation" => "recommendation-service",
        "review" => "review-service",
        "pricing" => "pricing-service",
        "product" => "product-service",
        "inventory" => "inventory-service",
        other => panic!("upstream {other:?} has no provider name in contracts::provider_of"),
    }
}

/// A V4 pact between `consumer` and the provider behind `upstream`, written
/// to [`pacts_dir`] when its mock server is dropped after every interaction
/// was met (`PACT_OVERWRITE=true` in `.cargo/config.toml`: the file is
/// replaced, never merged with an older one).
pub fn pact(consumer: &str, upstream: &str) -> PactBuilder {
    let mut builder = PactBuilder::new_v4(consumer, provider_of(upstream));
    builder.with_output_dir(pacts_dir());
    builder
}

/// The Pact mock servers standing in for a BFF's HTTP upstreams. Dropping
/// them checks that every interaction happened and nothing else did
/// (panicking otherwise), and writes the pacts.
pub struct Providers {
    consumer: String,
    mocks: Vec<(&'static str, Box<dyn ValidatingMockServer>)>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let upstreams: Vec<&str> = self.mocks.iter().map(|(u, _)| *u).collect();
        f.debug_struct("Providers")
            .field("upstreams", &upstreams)
            .finish()
    }
}

impl Providers {
    /// Starts one mock server per `(upstream, pact)`; every REST and
    /// GraphQL upstream in `declared` (a BFF's spec) must have one, so a
    /// new upstream cannot go unnoticed.
    ///
    /// # Panics
    /// When a declared HTTP upstream has no pact.
    pub fn start(
        consumer: &str,
        declared: &[UpstreamDecl],
        pacts: Vec<(&'static str, PactBuilder)>,
    ) -> Self {
        for decl in declared {
            let over_http = matches!(decl.protocol, Protocol::Rest | Protocol::GraphQl);
            assert!(
                !over_http || pacts.iter().any(|(u, _)| *u == decl.name),
                "upstream {:?} is called over HTTP but has no pact",
                decl.name
            );
        }
        let mocks = pacts
            .into_iter()
            .map(|(upstream, pact)| (upstream, pact.start_mock_server(None, None)))
            .collect();
        Providers {
            consumer: consumer.to_owned(),
            mocks,
        }
    }

    /// `BFF_UPSTREAM_{NAME}` of each mock, for the BFF's configuration
    /// (the GraphQL endpoint at `/graphql`).
    pub fn env(&self) -> Vec<(String, String)> {
        self.mocks
            .iter()
            .map(|(upstream, mock)| {
                let base = mock.url().to_string();
                let base = base.trim_end_matches('/');
                let url = if *upstream == "pricing" {
                    format!("{base}/graphql")
                } else {
                    base.to_owned()
                };
                (format!("BFF_UPSTREAM_{}", upstream.to_uppercase()), url)
            })
            .collect()
    }
}

impl Drop for Providers {
    /// Each mock server checks its interactions and writes its pact as it
    /// is dropped; then the pacts are rewritten with their keys in order,
    /// since Pact writes objects in hash order: the same contract gives
    /// the same file, and a diff shows only what changed.
    fn drop(&mut self) {
        let upstreams: Vec<&'static str> = self.mocks.iter().map(|(u, _)| *u).collect();
        self.mocks.clear();
        if std::thread::panicking() {
            return;
        }
        for upstream in upstreams {
            let path =
                pacts_dir().join(format!("{}-{}.json", self.consumer, provider_of(upstream)));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let pact: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut out = serde_json::to_string_pretty(&sorted(pact)).unwrap_or_default();
            out.push('\n');
            std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// `value` with every object's keys in order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(fields.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

impl Providers {
    /// The configuration a BFF needs to run against these mocks: their
    /// URLs, tokens from `jwks_url` issued by `issuer`, and, when
    /// `price_changes_over_redis`, `REDIS_URL` on a closed port. Price
    /// changes then come over Redis, as in every shared deployment, so the
    /// BFF does not open the pricing service's event stream against the
    /// mock: a stream is no request/response interaction (see
    /// `contracts/README.md`). Nothing listens there: the cache and the feed
    /// run without Redis.
    pub fn bff_env(
        &self,
        jwks_url: &str,
        issuer: &str,
        price_changes_over_redis: bool,
    ) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("BFF_JWKS_URL".into(), jwks_url.to_owned()));
        env.push(("BFF_ISSUER".into(), issuer.to_owned()));
        if price_changes_over_redis {
            env.push(("REDIS_URL".into(), "redis://127.0.0.1:1".into()));
        }
        env
    }
}

/// Examples from the demo data, as the services return them, read through
/// the BFFs' models ([`through`]).
pub mod examples {
    use bff_clients::models::{OrderPage, RecommendationList, User};
    use demo_services::data::DemoData;
    use serde_json::{Value, json};
    use uuid::Uuid;

    use crate::through;

    /// A user's profile.
    ///
    /// # Panics
    /// When the user is unknown.
    pub fn profile(data: &DemoData, user: Uuid) -> Value {
        through::<User>(serde_json::to_value(data.user(&user)).expect("a user"))
    }

    /// A user's `limit` latest orders.
    ///
    /// # Panics
    /// When the user is unknown.
    pub fn latest_orders(data: &DemoData, user: Uuid, limit: usize) -> Value {
        let orders: Vec<Value> = data
            .orders_of(&user)
            .expect("the user's orders")
            .take(limit)
            .map(|o| serde_json::to_value(o).expect("an order"))
            .collect();
        through::<OrderPage>(json!({ "total": orders.len(), "orders": orders }))
    }

    /// A user's `limit` best recommendations.
    ///
    /// # Panics
    /// When the user is unknown.
    pub fn best_picks(data: &DemoData, user: Uuid, limit: usize) -> Value {
        let picks = data
            .recommendations_for(&user)
            .expect("the user's recommendations");
        through::<RecommendationList>(
            json!({ "recommendations": &picks[..limit.min(picks.len())] }),
        )
    }
}

/// The paths of an OpenAPI document (`/v1/dashboard`, …).
pub fn openapi_paths(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .map(|paths| paths.keys().cloned().collect())
        .unwrap_or_default()
}

/// Matchers for `example`, the body a BFF expects: objects field by field
/// (only the fields given, so only those the BFF reads), ids and timestamps
/// by format, other values by type, arrays by the shape of their first
/// element with at least one. `null` fields are left out: an absent or null
/// optional field is as good to the BFF as any value. An empty array stays
/// an exact `[]` (a provider state says why it is empty).
pub fn shape(example: &Value) -> JsonPattern {
    match example {
        Value::Object(fields) => JsonPattern::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(items) => match items.first() {
            Some(first) => EachLike::new(shape(first)).into(),
            None => JsonPattern::Json(Value::Array(Vec::new())),
        },
        Value::String(s) => {
            for format in [UUID, TIMESTAMP, DATE] {
                if build_regex(format).is_match(s) {
                    return Term::<JsonPattern>::new(build_regex(format), s.clone()).into();
                }
            }
            Like::<JsonPattern>::new(example.clone()).into()
        }
        _ => Like::<JsonPattern>::new(example.clone()).into(),
    }
}

/// `value` read through the model `T` and written back: only the fields
/// `T` has. Panics when `value` does not fit `T` (the example is wrong).
pub fn through<T: serde::de::DeserializeOwned + serde::Serialize>(value: Value) -> Value {
    let model: T = serde_json::from_value(value).unwrap_or_else(|e| {
        panic!(
            "the example does not fit {}: {e}",
            std::any::type_name::<T>()
        )
    });
    serde_json::to_value(model).unwrap_or_else(|e| panic!("{e}"))
}

/// The client operations over HTTP (REST and GraphQL) that a BFF's
/// `/metrics` shows it made: `(upstream, operation)` of every
/// `http.client.request.duration` series.
pub fn client_operations(metrics: &str) -> BTreeSet<(String, String)> {
    metrics
        .lines()
        .filter(|line| line.starts_with("http_client_request_duration_seconds_count{"))
        .filter_map(|line| {
            let labels = &line[line.find('{')? + 1..line.rfind('}')?];
            let label = |name: &str| {
                labels.split(',').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    (key == name).then(|| value.trim_matches('"').to_owned())
                })
            };
            Some((label("upstream")?, label("operation")?))
        })
        .collect()
}

/// The interactions of a written pact, as `(description, provider states)`.
///
/// # Panics
/// When the file is missing or not a pact.
pub fn interactions(consumer: &str, provider: &str) -> Vec<(String, Vec<String>)> {
    let path = pacts_dir().join(format!("{consumer}-{provider}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pact: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pact["interactions"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|i| {
                    let states = i["providerStates"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        i["description"].as_str().unwrap_or_default().to_owned(),
                        states,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The end of a BFF's contract test, against the BFF served at `base_url`:
/// its OpenAPI document lists exactly the routes the test `exercised`; the
/// mock servers are dropped (every interaction must have happened, nothing
/// else may have; the pacts are written); and every client operation in its
/// `/metrics` has an interaction of its own. The JWKS fetch is exempt: it
/// is the identity provider's standard document (RFC 7517), not a domain
/// service's API.
///
/// # Panics
/// When any of that does not hold.
pub async fn finish(
    consumer: &str,
    base_url: &str,
    exercised: &BTreeSet<String>,
    providers: Providers,
) {
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base_url}{path}"));
        let path = path.to_owned();
        async move {
            request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .text()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        }
    };
    let doc: Value = serde_json::from_str(&get("/openapi.json").await)
        .unwrap_or_else(|e| panic!("/openapi.json: {e}"));
    assert_eq!(
        &openapi_paths(&doc),
        exercised,
        "every route the BFF serves is exercised by its contract test"
    );
    let metrics = get("/metrics").await;
    let operations = client_operations(&metrics);
    assert!(!operations.is_empty(), "no client operations in {metrics}");
    drop(providers);
    let uncovered = uncovered(consumer, &operations, &["jwks"]);
    assert!(
        uncovered.is_empty(),
        "client operations without a pact: {uncovered:?}"
    );
}

/// Every `(upstream, operation)` the BFF was seen to call that no interaction
/// of its pact with that upstream's provider describes. An interaction
/// describes an operation when its description starts with `operation:`.
pub fn uncovered(
    consumer: &str,
    operations: &BTreeSet<(String, String)>,
    skip_upstreams: &[&str],
) -> Vec<String> {
    operations
        .iter()
        .filter(|(upstream, _)| !skip_upstreams.contains(&upstream.as_str()))
        .filter(|(upstream, operation)| {
            let provider = provider_of(upstream);
            let prefix = format!("{operation}:");
            !std::path::Path::new(&pacts_dir().join(format!("{consumer}-{provider}.json"))).exists()
                || !interactions(consumer, provider)
                    .iter()
                    .any(|(description, _)| description.starts_with(&prefix))
        })
        .map(|(upstream, operation)| format!("{upstream}/{operation}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_read_from_the_client_histogram() {
        let metrics = "\
# TYPE http_client_request_duration_seconds histogram
http_client_request_duration_seconds_bucket{upstream=\"user\",operation=\"get_user\",le=\"0.1\"} 1
http_client_request_duration_seconds_count{upstream=\"user\",operation=\"get_user\",outcome=\"ok\"} 3
http_client_request_duration_seconds_count{upstream=\"pricing\",operation=\"pricings\",outcome=\"ok\"} 1
rpc_client_call_duration_seconds_count{upstream=\"product\",operation=\"get_product\"} 2
";
        let ops = client_operations(metrics);
        assert_eq!(
            ops.into_iter().collect::<Vec<_>>(),
            vec![
                ("pricing".to_owned(), "pricings".to_owned()),
                ("user".to_owned(), "get_user".to_owned())
            ]
        );
    }

    #[test]
    fn shapes_match_by_format_and_type_and_leave_nulls_out() {
        let pattern = shape(&serde_json::json!({
            "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "created_at": "2026-11-30T10:00:00Z",
            "name": "x",
            "tags": [1, 2],
            "none": [],
            "gone": null
        }));
        let example = pact_consumer::patterns::Pattern::to_example(&pattern);
        assert_eq!(
            example,
            serde_json::json!({
                "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                "created_at": "2026-11-30T10:00:00Z",
                "name": "x",
                "tags": [1],
                "none": []
            })
        );
    }
}
