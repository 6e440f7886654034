//! `GET /v1/dashboard`.

use std::sync::Arc;

use crate::sources::{Order, OrderPage, Profile, Recommendation, RecommendationList};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bff_aggregate::Metadata;
use bff_auth::Claims;
use bff_edge::etag::strong_etag;
use bff_edge::extract::Query;
use bff_edge::{Aggregate, RequestContext};
use bff_problem::ApiError;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::images::ImageSizing;

const ORDERS: u32 = 5;
const RECOMMENDATIONS: u32 = 3;

/// The dashboard as the app renders it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Dashboard {
    user: MobileUser,
    recent_orders: Option<Vec<SlimOrder>>,
    recommendations: Option<Vec<SlimRecommendation>>,
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MobileUser {
    id: Uuid,
    name: String,
    avatar_url: String,
    preferences: MobilePreferences,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MobilePreferences {
    language: String,
    currency: String,
    theme: String,
    push: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SlimOrder {
    id: Uuid,
    status: String,
    placed_at: String,
    total_minor: u64,
    currency: String,
    item_count: u32,
    thumbnail_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SlimRecommendation {
    product_id: Uuid,
    name: String,
    price_minor: u64,
    currency: String,
    image_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardQuery {
    dpr: Option<String>,
}

fn shape_user(user: &Profile, images: &ImageSizing) -> MobileUser {
    MobileUser {
        id: user.id,
        name: user.display_name.clone(),
        avatar_url: images.url(&user.avatar_url, 48),
        preferences: MobilePreferences {
            language: user.preferences.language.clone(),
            currency: user.preferences.currency.clone(),
            theme: user.preferences.theme.clone(),
            push: user.preferences.notifications.push,
        },
    }
}

fn shape_order(order: &Order, images: &ImageSizing) -> SlimOrder {
    SlimOrder {
        id: order.id,
        status: order.status.clone(),
        // The app shows the day only.
        placed_at: order
            .created_at
            .get(..10)
            .unwrap_or(&order.created_at)
            .to_owned(),
        total_minor: order.total_minor,
        currency: order.currency.clone(),
        item_count: order.items.iter().map(|i| i.quantity).sum(),
        thumbnail_url: order.items.first().map(|i| images.url(&i.image_url, 40)),
    }
}

fn shape_recommendation(r: &Recommendation, images: &ImageSizing) -> SlimRecommendation {
    SlimRecommendation {
        product_id: r.product_id,
        name: r.name.clone(),
        price_minor: r.price_minor,
        currency: r.currency.clone(),
        image_url: images.url(&r.image_url, 120),
    }
}

/// What the ETag covers: the content, not the metadata's generation
/// timestamp (an unchanged dashboard must revalidate as unchanged).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Content<'a> {
    user: &'a MobileUser,
    recent_orders: &'a Option<Vec<SlimOrder>>,
    recommendations: &'a Option<Vec<SlimRecommendation>>,
}

/// The body as sent, serialised once, and its strong ETag: a hash of the
/// sent bytes up to the metadata, and of which sections failed.
fn serialise(body: &Dashboard) -> Result<(Vec<u8>, HeaderValue), serde_json::Error> {
    let mut bytes = Vec::with_capacity(4096);
    serde_json::to_writer(
        &mut bytes,
        &Content {
            user: &body.user,
            recent_orders: &body.recent_orders,
            recommendations: &body.recommendations,
        },
    )?;
    // `{…content…}` becomes `{…content…,"metadata":{…}}`.
    bytes.pop();
    let content = bytes.len();
    serde_json::to_writer(&mut bytes, &(&body.metadata.degraded, &body.metadata.stale))?;
    let etag = strong_etag(&bytes);
    bytes.truncate(content);
    bytes.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut bytes, &body.metadata)?;
    bytes.push(b'}');
    Ok((bytes, etag))
}

/// The signed-in user's dashboard, slimmed for the app: profile, latest
/// orders and recommendations in one answer, partial when an optional
/// section fails (`metadata`), with an ETag.
#[utoipa::path(
    get,
    path = "/v1/dashboard",
    tag = "dashboard",
    params(
        ("dpr" = Option<String>, Query, description = "Device pixel ratio of the image URLs, 1 to 4; the `DPR` client hint when absent"),
        ("DPR" = Option<String>, Header, description = "Client hint: the device pixel ratio"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of earlier answers: 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "The dashboard", body = Dashboard,
            headers(("ETag" = String, description = "Strong validator of the content"))),
        (status = 304, description = "Unchanged since an ETag given in `If-None-Match`"),
        (status = 404, description = "The user does not exist"),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn dashboard(
    State(app): State<Arc<AppState>>,
    claims: Claims,
    ctx: RequestContext,
    agg: Aggregate,
    headers: HeaderMap,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ApiError> {
    let user_id = claims.user_id()?;
    let images = ImageSizing::from_request(query.dpr.as_deref(), &headers)
        .map_err(|e| ApiError::validation(vec![e]))?;
    let (user, orders, recommendations) = tokio::join!(
        agg.critical("user")
            .cached("user", format!("user:{user_id}"))
            .run(app.users.get_as::<Profile>(&ctx, user_id)),
        agg.optional("orders")
            .cached("orders", format!("orders:{user_id}:{ORDERS}"))
            .run(app.orders.recent_as::<OrderPage>(&ctx, user_id, ORDERS)),
        agg.optional("recommendations")
            .cached(
                "recommendations",
                format!("recommendations:{user_id}:{RECOMMENDATIONS}")
            )
            .run(app.recommendations.for_user_as::<RecommendationList>(
                &ctx,
                user_id,
                RECOMMENDATIONS
            )),
    );
    let user = user.required()?;
    let body = Dashboard {
        user: shape_user(&user, &images),
        recent_orders: orders.into_value().map(|page| {
            page.orders
                .iter()
                .take(ORDERS as usize)
                .map(|o| shape_order(o, &images))
                .collect()
        }),
        recommendations: recommendations.into_value().map(|list| {
            list.recommendations
                .iter()
                .take(RECOMMENDATIONS as usize)
                .map(|r| shape_recommendation(r, &images))
                .collect()
        }),
        metadata: agg.metadata()?,
    };
    let (bytes, etag) = serialise(&body).map_err(|error| {
        tracing::error!(%error, "dashboard does not serialise");
        ApiError::internal()
    })?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::VARY,
        HeaderValue::from_static("DPR, Sec-CH-DPR, Save-Data"),
    );
    Ok(response)
}
