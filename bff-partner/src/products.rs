//! The batch catalogue endpoints, v1 and v2.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bff_aggregate::Metadata;
use bff_auth::Claims;
use bff_clients::models::{Price, Product, Stock};
use bff_edge::extract::{Query, parse_uuid};
use bff_edge::flags::Flag;
use bff_edge::ratelimit::Cost;
use bff_edge::versioning::{self, Lifecycle};
use bff_edge::{Aggregate, RequestContext};
use bff_problem::{ApiError, FieldError};
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AppState, fragments};

/// The OpenAPI schema of `ids`, as [`parse_ids`] accepts it: 1 to 50
/// hyphenated UUIDs separated by commas, with blanks and empty items
/// around them ignored. The annotations take it as a literal (a test ties
/// the two together).
#[cfg(test)]
pub(crate) const IDS_PATTERN: &str = "^(\\s*,)*\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\s*(,(\\s*,)*\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\s*){0,49}(,\\s*)*$";

/// The versions `API-Version` may name (the header's schema).
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub(crate) enum ApiVersion {
    /// v1 (deprecated).
    #[serde(rename = "1")]
    One,
    /// v2.
    #[serde(rename = "2")]
    Two,
}

impl ApiVersion {
    /// The header's value, exactly `1` or `2`.
    fn parse(raw: &[u8]) -> Option<Self> {
        match raw {
            b"1" => Some(ApiVersion::One),
            b"2" => Some(ApiVersion::Two),
            _ => None,
        }
    }
}

/// The most ids one request may ask for.
pub(crate) const MAX_IDS: usize = 50;

/// v1: deprecated on 2026-09-01 (RFC 9745: `@` unix seconds), gone on
/// 2027-07-01 (RFC 8594), succeeded by v2.
pub(crate) const V1: Lifecycle = Lifecycle {
    bff: "bff-partner",
    version: "v1",
    deprecation: Some("@1788220800"),
    sunset: Some("Thu, 01 Jul 2027 00:00:00 GMT"),
    links: &["</v2/products>; rel=\"successor-version\""],
};

/// The version `/products` serves a partner that sends no `API-Version`:
/// the migration of version-less callers from v1 to v2, partner by partner
/// (sticky per client id, on every replica). Shipped with everyone on v2
/// (the newest, as the contract says); a team moving a fleet of old
/// integrations over sets `BFF_FLAG_UNVERSIONED_VERSION=v1:80,v2:20` and
/// raises v2's share in Redis without a restart.
pub(crate) const UNVERSIONED: Flag = Flag {
    key: "unversioned-version",
    description: "The version /products serves a partner that sends no API-Version (v1 or v2), sticky per partner",
    variants: &["v1", "v2"],
    default: "v2",
};

/// v2: current.
pub(crate) const V2: Lifecycle = Lifecycle {
    bff: "bff-partner",
    version: "v2",
    deprecation: None,
    sunset: None,
    links: &[],
};

/// The query of every route: what the handlers deserialise is what the
/// document says (one declaration for the three routes).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct IdsQuery {
    /// 1 to 50 comma-separated product UUIDs (hyphenated); duplicates are dropped, order is kept
    #[param(required = true, value_type = String, pattern = "^(\\s*,)*\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\s*(,(\\s*,)*\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\s*){0,49}(,\\s*)*$", example = "0b6a6a34-5d2c-4b8e-9a53-1f0e3c2d4b5a,7c1e2f3a-9b8d-4c6e-8f2a-3b4c5d6e7f80")]
    ids: Option<String>,
}

/// What a request costs a partner's quota: one unit per distinct product
/// id it asks for (a batch of 50 costs the upstreams 50 times what one id
/// costs, in rows read and bytes sent), counted as the handlers count them.
/// A request whose ids do not parse costs one: it is refused with 400
/// before any upstream is called.
pub(crate) const COST: Cost = Cost {
    unit: "ids",
    of: cost,
};

fn cost(parts: &http::request::Parts) -> u32 {
    axum::extract::Query::<IdsQuery>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|q| parse_ids(q.0.ids.as_deref()).ok())
        .map_or(1, |ids| u32::try_from(ids.len()).unwrap_or(u32::MAX))
}

/// Parses `ids`: 1 to 50 comma-separated UUIDs, duplicates dropped, order
/// kept; every bad one is named with its position.
fn parse_ids(raw: Option<&str>) -> Result<Vec<Uuid>, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "ids",
            "is required: a comma-separated list of product ids",
        )])
    })?;
    let parts: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() || parts.len() > MAX_IDS {
        return Err(ApiError::validation(vec![FieldError::new(
            "ids",
            format!("must list 1 to {MAX_IDS} product ids, got {}", parts.len()),
        )]));
    }
    let mut seen = HashSet::with_capacity(parts.len());
    let mut ids = Vec::with_capacity(parts.len());
    let mut errors = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        // The field's name is written only for an error: the cost of every
        // request parses its ids too.
        match parse_uuid("ids", part) {
            Ok(id) => {
                if seen.insert(id) {
                    ids.push(id);
                }
            }
            Err(e) => errors.push(FieldError::new(format!("ids[{i}]"), e.message)),
        }
    }
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(ApiError::validation(errors))
    }
}

struct Assembled {
    ids: Vec<Uuid>,
    products: HashMap<Uuid, Arc<Product>>,
    missing: Vec<Uuid>,
    prices: Option<HashMap<Uuid, Arc<Price>>>,
    stock: Option<HashMap<Uuid, Arc<Stock>>>,
    metadata: Metadata,
}

/// One batch call per upstream, concurrently, for the ids not cached; each
/// product, price and stock level is its own fragment, tagged with its
/// product (`product:{id}`), so a batch shares its entries with every other
/// batch (and page) that names the same products. Products are critical.
async fn fetch(
    app: &AppState,
    ctx: &RequestContext,
    agg: Aggregate,
    ids: Vec<Uuid>,
) -> Result<Assembled, ApiError> {
    let (products, prices, stock) = tokio::join!(
        agg.critical("products")
            .run_each(&fragments::PRODUCT, &ids, |ids| app
                .products
                .load_many(ctx, ids)),
        agg.optional("pricing")
            .run_each(&fragments::PRICE, &ids, |ids| app
                .pricing
                .load_many(ctx, ids)),
        agg.optional("inventory")
            .run_each(&fragments::STOCK, &ids, |ids| app
                .inventory
                .load_many(ctx, ids)),
    );
    let products = Arc::unwrap_or_clone(products.required()?);
    Ok(Assembled {
        missing: products.missing,
        products: products.found,
        prices: prices.into_value().map(|e| Arc::unwrap_or_clone(e).found),
        stock: stock.into_value().map(|e| Arc::unwrap_or_clone(e).found),
        metadata: agg.metadata()?,
        ids,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V1Response {
    products: Vec<V1Product>,
    missing_ids: Vec<Uuid>,
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V1Product {
    id: Uuid,
    sku: String,
    name: String,
    brand: String,
    category: String,
    price: Option<V1Price>,
    stock: Option<V1Stock>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V1Price {
    amount: u64,
    currency: String,
    discount: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V1Stock {
    available: i64,
    in_stock: bool,
}

fn shape_v1(mut a: Assembled) -> V1Response {
    let products = a
        .ids
        .iter()
        .filter_map(|id| a.products.remove(id))
        .map(Arc::unwrap_or_clone)
        .map(|p| V1Product {
            price: a
                .prices
                .as_ref()
                .and_then(|m| m.get(&p.id))
                .map(|pr| V1Price {
                    amount: pr.current,
                    currency: pr.currency.clone(),
                    discount: pr.discount,
                }),
            stock: a
                .stock
                .as_ref()
                .and_then(|m| m.get(&p.id))
                .map(|s| V1Stock {
                    available: s.available,
                    in_stock: s.available > 0,
                }),
            id: p.id,
            sku: p.sku,
            name: p.name,
            brand: p.brand,
            category: p.category,
        })
        .collect();
    V1Response {
        products,
        missing_ids: a.missing,
        metadata: a.metadata,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Response {
    data: Vec<V2Product>,
    meta: V2Meta,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Meta {
    requested: usize,
    returned: usize,
    missing_ids: Vec<Uuid>,
    #[serde(flatten)]
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Product {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    brand: String,
    category: String,
    image_urls: Vec<String>,
    rating: V2Rating,
    pricing: Option<V2Pricing>,
    availability: Option<V2Availability>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Rating {
    average: f64,
    count: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Pricing {
    current_minor: u64,
    original_minor: u64,
    currency: String,
    discount_percent: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct V2Availability {
    available: i64,
    in_stock: bool,
    warehouses: usize,
}

fn shape_v2(mut a: Assembled) -> V2Response {
    let requested = a.ids.len();
    let data: Vec<V2Product> = a
        .ids
        .iter()
        .filter_map(|id| a.products.remove(id))
        .map(Arc::unwrap_or_clone)
        .map(|p| V2Product {
            pricing: a
                .prices
                .as_ref()
                .and_then(|m| m.get(&p.id))
                .map(|pr| V2Pricing {
                    current_minor: pr.current,
                    original_minor: pr.original,
                    currency: pr.currency.clone(),
                    discount_percent: pr.discount,
                }),
            availability: a
                .stock
                .as_ref()
                .and_then(|m| m.get(&p.id))
                .map(|s| V2Availability {
                    available: s.available,
                    in_stock: s.available > 0,
                    warehouses: s.warehouses.iter().filter(|w| w.available > 0).count(),
                }),
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            brand: p.brand,
            category: p.category,
            image_urls: p.images.into_iter().map(|i| i.url).collect(),
            rating: V2Rating {
                average: p.rating_average,
                count: p.rating_count,
            },
        })
        .collect();
    V2Response {
        meta: V2Meta {
            requested,
            returned: data.len(),
            missing_ids: a.missing,
            metadata: a.metadata,
        },
        data,
    }
}

/// Products by id, v1 shape (deprecated: `Deprecation`, `Sunset` and a
/// `Link` to v2 on every answer, errors included).
#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "catalog",
    params(IdsQuery),
    responses(
        (status = 200, description = "The products found, in the order asked, and the ids not found", body = V1Response,
            headers(
                ("Deprecation" = String, description = "RFC 9745: when v1 was deprecated"),
                ("Sunset" = String, description = "RFC 8594: when v1 goes away"),
                ("Link" = String, description = "RFC 8288: the successor version"),
            )),
    ),
    security(("bearer" = ["catalog:read"])),
)]
pub(crate) async fn v1(
    State(app): State<Arc<AppState>>,
    ctx: RequestContext,
    agg: Aggregate,
    Query(q): Query<IdsQuery>,
) -> Result<Response, ApiError> {
    let ids = parse_ids(q.ids.as_deref())?;
    Ok(Json(shape_v1(fetch(&app, &ctx, agg, ids).await?)).into_response())
}

/// Products by id, with price and availability: one batch call per upstream
/// for the ids not cached; partial when pricing or inventory fails.
#[utoipa::path(
    get,
    path = "/v2/products",
    tag = "catalog",
    params(IdsQuery),
    responses(
        (status = 200, description = "The products found, in the order asked, and the ids not found", body = V2Response),
    ),
    security(("bearer" = ["catalog:read"])),
)]
pub(crate) async fn v2(
    State(app): State<Arc<AppState>>,
    ctx: RequestContext,
    agg: Aggregate,
    Query(q): Query<IdsQuery>,
) -> Result<Response, ApiError> {
    let ids = parse_ids(q.ids.as_deref())?;
    Ok(Json(shape_v2(fetch(&app, &ctx, agg, ids).await?)).into_response())
}

/// Products by id in the version asked with `API-Version` (without one:
/// the partner's variant of the `unversioned-version` flag, by default the
/// newest); the answer says `API-Version` and `Vary: API-Version`.
#[utoipa::path(
    get,
    path = "/products",
    tag = "catalog",
    params(
        IdsQuery,
        ("API-Version" = inline(Option<ApiVersion>), Header, description = "1 or 2; without it, the version your partner account is migrated to (2 unless told otherwise)"),
    ),
    responses(
        (status = 200, description = "The v1 or v2 shape", body = V2Response,
            headers(("API-Version" = String, description = "The version served"))),
    ),
    security(("bearer" = ["catalog:read"])),
)]
pub(crate) async fn negotiated(
    State(app): State<Arc<AppState>>,
    ctx: RequestContext,
    agg: Aggregate,
    claims: Claims,
    headers: HeaderMap,
    Query(q): Query<IdsQuery>,
) -> Result<Response, ApiError> {
    let version = match headers.get("api-version") {
        None => match app.flags.variant(&UNVERSIONED, &claims.sub).await {
            "v1" => ApiVersion::One,
            _ => ApiVersion::Two,
        },
        Some(raw) => ApiVersion::parse(raw.as_bytes()).ok_or_else(|| {
            ApiError::validation(vec![FieldError::new("API-Version", "must be 1 or 2")])
        })?,
    };
    let version = match version {
        ApiVersion::One => 1,
        ApiVersion::Two => 2,
    };
    let lifecycle = if version == 1 { V1 } else { V2 };
    versioning::count_call(lifecycle.bff, lifecycle.version, Some(&claims));
    let ids = parse_ids(q.ids.as_deref())?;
    let assembled = fetch(&app, &ctx, agg, ids).await?;
    let mut response = if version == 1 {
        Json(shape_v1(assembled)).into_response()
    } else {
        Json(shape_v2(assembled)).into_response()
    };
    versioning::announce(&lifecycle, &mut response);
    let h = response.headers_mut();
    h.insert("api-version", HeaderValue::from(version));
    h.insert(header::VARY, HeaderValue::from_static("API-Version"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// An item of an `ids` list: a valid id (either case), a broken one,
    /// blanks, nothing.
    fn item() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
            1 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string().to_uppercase()),
            1 => any::<u128>().prop_map(|n| format!("  {} ", Uuid::from_u128(n))),
            1 => any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string()),
            1 => Just(String::new()),
            1 => Just(" ".to_owned()),
            1 => "[0-9a-f-]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The document's pattern for `ids` accepts exactly what the
        /// handlers accept.
        #[test]
        fn the_documented_pattern_is_what_the_handlers_accept(
            items in prop::collection::vec(item(), 0..60),
        ) {
            static PATTERN: std::sync::LazyLock<regex::Regex> =
                std::sync::LazyLock::new(|| regex::Regex::new(IDS_PATTERN).expect("pattern"));
            let raw = items.join(",");
            prop_assert_eq!(PATTERN.is_match(&raw), parse_ids(Some(&raw)).is_ok(), "{:?}", raw);
        }
    }

    #[test]
    fn the_document_carries_the_pattern_and_the_versions() {
        use utoipa_axum::router::OpenApiRouter;
        use utoipa_axum::routes;
        let (_, doc) = OpenApiRouter::<bff_edge::BffState<AppState>>::new()
            .routes(routes!(v1))
            .routes(routes!(v2))
            .routes(routes!(negotiated))
            .split_for_parts();
        let doc = serde_json::to_value(doc).expect("json");
        for path in ["/v1/products", "/v2/products", "/products"] {
            let ids = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "ids"))
                .expect("ids");
            assert_eq!(ids["schema"]["pattern"], IDS_PATTERN, "{path}");
        }
        let version = doc["paths"]["/products"]["get"]["parameters"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "API-Version"))
            .expect("API-Version");
        let schema = serde_json::to_string(&version["schema"]).expect("json");
        assert!(schema.contains(r#""enum":["1","2"]"#), "{schema}");
    }

    use super::*;

    #[test]
    fn ids_are_validated_deduplicated_and_ordered() {
        let a = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        let b = "8d6f3a4e-1d2c-4b5a-9e8f-7a6b5c4d3e2f";
        assert_eq!(
            parse_ids(Some(&format!("{b},{a},{b}")))
                .expect("valid")
                .len(),
            2
        );
        assert_eq!(
            parse_ids(Some(&format!("{b},{a}"))).expect("valid")[0].to_string(),
            b
        );
        assert_eq!(
            parse_ids(None).expect_err("missing").errors()[0].field,
            "ids"
        );
        assert_eq!(
            parse_ids(Some(",,")).expect_err("empty").errors()[0].field,
            "ids"
        );
        let fifty_one = vec![a; 51].join(",");
        assert!(
            parse_ids(Some(&fifty_one)).expect_err("too many").errors()[0]
                .message
                .contains("got 51")
        );
        let bad = parse_ids(Some(&format!("{a},nope,{b},42"))).expect_err("bad ones");
        let fields: Vec<&str> = bad.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["ids[1]", "ids[3]"]);
    }
}
