//! `GET /v1/products/{productId}?includeReviews=&includeInventory=`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bff_aggregate::{Aggregation, Metadata, Section};
use bff_auth::Claims;
use bff_clients::models::{Price, Product, ReviewPage, Stock};
use bff_clients::{InventoryClient, PricingClient, ProductClient};
use bff_edge::extract::{Query, parse_bool, parse_uuid};
use bff_edge::{Aggregate, RequestContext};
use bff_problem::ApiError;
use bff_upstream::CallContext;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AppState, fragments};

const REVIEWS: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProductQuery {
    include_reviews: Option<String>,
    include_inventory: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductPage {
    product: WebProduct,
    pricing: PricingSection,
    reviews: Option<WebReviews>,
    inventory: Option<WebInventory>,
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebProduct {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    brand: String,
    category: String,
    images: Vec<WebImage>,
    attributes: BTreeMap<String, String>,
    rating: Rating,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WebImage {
    url: String,
    alt: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Rating {
    average: f64,
    count: u32,
}

/// The price, or why there is none.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum PricingSection {
    Price {
        current: u64,
        original: u64,
        currency: String,
        discount: f64,
    },
    Failed {
        error: &'static str,
    },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebReviews {
    average_rating: f64,
    total: u64,
    items: Vec<WebReview>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebReview {
    id: Uuid,
    author: String,
    rating: u8,
    title: String,
    body: String,
    verified_purchase: bool,
    helpful_votes: u32,
    created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebInventory {
    available: i64,
    in_stock: bool,
    warehouses: Vec<WebWarehouse>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebWarehouse {
    location: String,
    available: i64,
}

fn product(p: Product) -> WebProduct {
    WebProduct {
        id: p.id,
        sku: p.sku,
        name: p.name,
        description: p.description,
        brand: p.brand,
        category: p.category,
        images: p
            .images
            .into_iter()
            .map(|i| WebImage {
                url: i.url,
                alt: i.alt,
            })
            .collect(),
        attributes: p.attributes,
        rating: Rating {
            average: p.rating_average,
            count: p.rating_count,
        },
    }
}

pub(crate) fn pricing(p: Option<Price>) -> PricingSection {
    match p {
        Some(p) => PricingSection::Price {
            current: p.current,
            original: p.original,
            currency: p.currency,
            discount: p.discount,
        },
        None => PricingSection::Failed {
            error: "unavailable",
        },
    }
}

fn reviews(r: ReviewPage) -> WebReviews {
    WebReviews {
        average_rating: r.average_rating,
        total: r.total,
        items: r
            .reviews
            .into_iter()
            .map(|r| WebReview {
                id: r.id,
                author: r.author_name,
                rating: r.rating,
                title: r.title,
                body: r.body,
                verified_purchase: r.verified_purchase,
                helpful_votes: r.helpful_votes,
                created_at: r.created_at,
            })
            .collect(),
    }
}

pub(crate) fn inventory(s: Stock) -> WebInventory {
    WebInventory {
        available: s.available,
        in_stock: s.available > 0,
        warehouses: s
            .warehouses
            .into_iter()
            .map(|w| WebWarehouse {
                location: w.location,
                available: w.available,
            })
            .collect(),
    }
}

/// The product, cached and tagged as every view of a product reads it (the
/// page, the live stream's existence check).
pub(crate) async fn product_section(
    agg: &Aggregation,
    products: &ProductClient,
    ctx: &CallContext,
    id: Uuid,
) -> Section<Product> {
    agg.critical("product")
        .cached(&fragments::PRODUCT, &id)
        .run(products.load(ctx, id))
        .await
}

/// The price, as the page and the live snapshot read it.
pub(crate) async fn pricing_section(
    agg: &Aggregation,
    pricing: &PricingClient,
    ctx: &CallContext,
    id: Uuid,
) -> Section<Price> {
    agg.optional("pricing")
        .cached(&fragments::PRICE, &id)
        .run(pricing.load(ctx, id))
        .await
}

/// The stock, as the page and the live snapshot read it.
pub(crate) async fn stock_section(
    agg: &Aggregation,
    inventory: &InventoryClient,
    ctx: &CallContext,
    id: Uuid,
) -> Section<Stock> {
    agg.optional("inventory")
        .cached(&fragments::STOCK, &id)
        .run(inventory.load(ctx, id))
        .await
}

/// A product page in one round trip: the product (critical), its price,
/// latest reviews and stock (optional), fetched concurrently over gRPC,
/// GraphQL and REST; partial when an optional section fails (`metadata`).
#[utoipa::path(
    get,
    path = "/v1/products/{product_id}",
    tag = "catalog",
    params(
        ("product_id" = String, Path, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", example = "0b6a6a34-5d2c-4b8e-9a53-1f0e3c2d4b5a", description = "The product's UUID (hyphenated)"),
        ("includeReviews" = Option<bool>, Query, description = "Whether to fetch the latest reviews: true or false (1 and 0 too), default true; anything else is a 400"),
        ("includeInventory" = Option<bool>, Query, description = "Whether to fetch stock levels: true or false (1 and 0 too), default true; anything else is a 400"),
    ),
    responses(
        (status = 200, description = "The product page", body = ProductPage),
        (status = 404, description = "No such product"),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn product_page(
    State(app): State<Arc<AppState>>,
    _claims: Claims,
    ctx: RequestContext,
    agg: Aggregate,
    Path(raw_id): Path<String>,
    Query(query): Query<ProductQuery>,
) -> Result<Json<ProductPage>, ApiError> {
    let mut errors = Vec::new();
    let id = parse_uuid("productId", &raw_id)
        .map_err(|e| errors.push(e))
        .ok();
    let include_reviews = parse_bool("includeReviews", query.include_reviews.as_deref(), true)
        .map_err(|e| errors.push(e))
        .ok();
    let include_inventory =
        parse_bool("includeInventory", query.include_inventory.as_deref(), true)
            .map_err(|e| errors.push(e))
            .ok();
    let (Some(id), Some(include_reviews), Some(include_inventory)) =
        (id, include_reviews, include_inventory)
    else {
        return Err(ApiError::validation(errors));
    };

    let (product_section, price, review_page, stock) = tokio::join!(
        product_section(&agg, &app.products, &ctx, id),
        pricing_section(&agg, &app.pricing, &ctx, id),
        async {
            if include_reviews {
                let fetch = app.reviews.for_product(&ctx, id, REVIEWS);
                Some(
                    agg.optional("reviews")
                        .cached(&fragments::REVIEWS, &(id, REVIEWS))
                        .run(fetch)
                        .await,
                )
            } else {
                None
            }
        },
        async {
            if include_inventory {
                Some(stock_section(&agg, &app.inventory, &ctx, id).await)
            } else {
                None
            }
        },
    );
    let product_data = product_section.required()?;
    Ok(Json(ProductPage {
        product: product(Arc::unwrap_or_clone(product_data)),
        pricing: pricing(price.into_value().map(Arc::unwrap_or_clone)),
        reviews: review_page
            .and_then(|s| s.into_value())
            .map(|r| reviews(Arc::unwrap_or_clone(r))),
        inventory: stock
            .and_then(|s| s.into_value())
            .map(|s| inventory(Arc::unwrap_or_clone(s))),
        metadata: agg.metadata()?,
    }))
}
