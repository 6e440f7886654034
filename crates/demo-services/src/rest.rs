//! The REST/JSON demo services: users, orders, recommendations and reviews.
//! Each is its own router on its own port, as separate services would be.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::data::{DemoData, Order, Recommendation, Review};
use crate::problem::{Problem, ValidQuery, check_limit, check_offset, parse_uuid};

type Data = State<Arc<DemoData>>;

/// Serialises borrowed data straight into a JSON response.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "serialising a response failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response could not be produced",
            )
            .into_response()
        }
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, Problem> {
    value.ok_or_else(|| Problem::invalid_field(field, "is required"))
}

/// `GET /users/{userId}`.
pub fn user_router(data: Arc<DemoData>) -> Router {
    Router::new()
        .route("/users/{user_id}", get(get_user))
        .with_state(data)
}

async fn get_user(State(data): Data, Path(id): Path<String>) -> Result<Response, Problem> {
    let id = parse_uuid("userId", &id)?;
    let user = data
        .user(&id)
        .ok_or_else(|| Problem::not_found("user", id))?;
    Ok(json(user))
}

/// `GET /orders?user_id=…&limit=…&offset=…&status=…` and `GET /orders/{orderId}`.
pub fn order_router(data: Arc<DemoData>) -> Router {
    Router::new()
        .route("/orders", get(list_orders))
        .route("/orders/{order_id}", get(get_order))
        .with_state(data)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersQuery {
    user_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    status: Option<String>,
}

#[derive(Serialize)]
struct OrderPage<'a> {
    user_id: Uuid,
    total: usize,
    limit: usize,
    offset: usize,
    orders: Vec<&'a Order>,
}

const ORDER_STATUSES: &[&str] = &["paid", "shipped", "delivered", "cancelled", "returned"];

async fn list_orders(
    State(data): Data,
    ValidQuery(q): ValidQuery<OrdersQuery>,
) -> Result<Response, Problem> {
    let user_id = parse_uuid("user_id", &required("user_id", q.user_id)?)?;
    let limit = check_limit(q.limit, 20, 100)?;
    let offset = check_offset(q.offset)?;
    if let Some(status) = q.status.as_deref()
        && !ORDER_STATUSES.contains(&status)
    {
        return Err(Problem::invalid_field(
            "status",
            format!("must be one of {}", ORDER_STATUSES.join(", ")),
        ));
    }
    let orders = data
        .orders_of(&user_id)
        .ok_or_else(|| Problem::not_found("user", user_id))?;
    let matching: Vec<&Order> = orders
        .filter(|o| q.status.as_deref().is_none_or(|s| o.status == s))
        .collect();
    let total = matching.len();
    let orders = matching.into_iter().skip(offset).take(limit).collect();
    Ok(json(&OrderPage {
        user_id,
        total,
        limit,
        offset,
        orders,
    }))
}

async fn get_order(State(data): Data, Path(id): Path<String>) -> Result<Response, Problem> {
    let id = parse_uuid("orderId", &id)?;
    Ok(json(
        data.order(&id)
            .ok_or_else(|| Problem::not_found("order", id))?,
    ))
}

/// `GET /recommendations?user_id=…&limit=…`.
pub fn recommendation_router(data: Arc<DemoData>) -> Router {
    Router::new()
        .route("/recommendations", get(list_recommendations))
        .with_state(data)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendationsQuery {
    user_id: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct RecommendationList<'a> {
    user_id: Uuid,
    model_version: &'static str,
    recommendations: &'a [Recommendation],
}

async fn list_recommendations(
    State(data): Data,
    ValidQuery(q): ValidQuery<RecommendationsQuery>,
) -> Result<Response, Problem> {
    let user_id = parse_uuid("user_id", &required("user_id", q.user_id)?)?;
    let limit = check_limit(q.limit, 10, 20)?;
    let all = data
        .recommendations_for(&user_id)
        .ok_or_else(|| Problem::not_found("user", user_id))?;
    Ok(json(&RecommendationList {
        user_id,
        model_version: "cf-v3.2.0",
        recommendations: &all[..limit.min(all.len())],
    }))
}

/// `GET /reviews?product_id=…&limit=…&offset=…` and the batch
/// `GET /reviews/summary?product_ids=a,b,…`.
pub fn review_router(data: Arc<DemoData>) -> Router {
    Router::new()
        .route("/reviews", get(list_reviews))
        .route("/reviews/summary", get(review_summaries))
        .with_state(data)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewsQuery {
    product_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize)]
struct ReviewPage<'a> {
    product_id: Uuid,
    average_rating: f64,
    total: usize,
    limit: usize,
    offset: usize,
    reviews: &'a [Review],
}

async fn list_reviews(
    State(data): Data,
    ValidQuery(q): ValidQuery<ReviewsQuery>,
) -> Result<Response, Problem> {
    let product_id = parse_uuid("product_id", &required("product_id", q.product_id)?)?;
    let limit = check_limit(q.limit, 10, 50)?;
    let offset = check_offset(q.offset)?;
    let reviews = data
        .reviews_of(&product_id)
        .ok_or_else(|| Problem::not_found("product", product_id))?;
    let average_rating = data.product(&product_id).map_or(0.0, |p| p.rating_average);
    let start = offset.min(reviews.len());
    let end = (start + limit).min(reviews.len());
    Ok(json(&ReviewPage {
        product_id,
        average_rating,
        total: reviews.len(),
        limit,
        offset,
        reviews: &reviews[start..end],
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    product_ids: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    product_id: Uuid,
    average_rating: f64,
    count: usize,
    /// Counts of 1 to 5 star ratings.
    histogram: [u32; 5],
}

#[derive(Serialize)]
struct Summaries {
    summaries: Vec<Summary>,
    missing_ids: Vec<Uuid>,
}

/// The most ids one batch call takes.
pub const MAX_BATCH: usize = 100;

/// Parses a comma-separated list of 1 to [`MAX_BATCH`] UUIDs.
pub(crate) fn parse_id_list(field: &str, raw: &str) -> Result<Vec<Uuid>, Problem> {
    let parts: Vec<&str> = raw.split(',').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() || parts.len() > MAX_BATCH {
        return Err(Problem::invalid_field(
            field,
            format!("must list 1 to {MAX_BATCH} ids, got {}", parts.len()),
        ));
    }
    parts.into_iter().map(|p| parse_uuid(field, p)).collect()
}

async fn review_summaries(
    State(data): Data,
    ValidQuery(q): ValidQuery<SummaryQuery>,
) -> Result<Response, Problem> {
    let ids = parse_id_list("product_ids", &required("product_ids", q.product_ids)?)?;
    let mut out = Summaries {
        summaries: Vec::with_capacity(ids.len()),
        missing_ids: Vec::new(),
    };
    for id in ids {
        match (data.reviews_of(&id), data.product(&id)) {
            (Some(reviews), Some(product)) => {
                let mut histogram = [0u32; 5];
                for r in reviews {
                    histogram[usize::from(r.rating.clamp(1, 5)) - 1] += 1;
                }
                out.summaries.push(Summary {
                    product_id: id,
                    average_rating: product.rating_average,
                    count: reviews.len(),
                    histogram,
                });
            }
            _ => out.missing_ids.push(id),
        }
    }
    Ok(json(&out))
}
