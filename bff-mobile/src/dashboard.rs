//! `GET /v1/dashboard`.

use std::sync::Arc;

use crate::sources::{Order, OrderPage, Profile, Recommendation, RecommendationList};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bff_aggregate::Metadata;
use bff_auth::Claims;
use bff_edge::etag::strong_etag;
use bff_edge::extract::Query;
use bff_edge::flags::Flag;
use bff_edge::{Aggregate, RequestContext};
use bff_problem::ApiError;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::images::{ImageSizing, SizedImage};
use crate::{AppState, fragments};

const ORDERS: u32 = 5;
const RECOMMENDATIONS: u32 = 3;
/// Orders the `compact` layout lists.
const COMPACT_ORDERS: usize = 3;

/// The home screen's layout, an experiment of the mobile team: `full`
/// lists the last five orders, `compact` the last three (whether a shorter
/// list brings more taps on recommendations). Sticky per user, on every
/// replica; shipped with everyone on `full`, moved with
/// `BFF_FLAG_DASHBOARD_LAYOUT=full:90,compact:10` or in Redis. Both read
/// the same cached orders.
pub(crate) const LAYOUT: Flag = Flag {
    key: "dashboard-layout",
    description: "The dashboard's layout: full (5 recent orders) or compact (3), sticky per user",
    variants: &["full", "compact"],
    default: "full",
};

// The slim views borrow every string from the upstream documents they are
// shaped from, and sized image URLs write themselves into the body: shaping
// copies nothing, the body is the only thing built per request. (Doc
// comments here are the OpenAPI descriptions.)

/// The dashboard as the app renders it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Dashboard<'a> {
    user: MobileUser<'a>,
    recent_orders: Option<Vec<SlimOrder<'a>>>,
    recommendations: Option<Vec<SlimRecommendation<'a>>>,
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MobileUser<'a> {
    id: Uuid,
    name: &'a str,
    #[schema(value_type = String)]
    avatar_url: SizedImage<'a>,
    preferences: MobilePreferences<'a>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MobilePreferences<'a> {
    language: &'a str,
    currency: &'a str,
    theme: &'a str,
    push: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SlimOrder<'a> {
    id: Uuid,
    status: &'a str,
    placed_at: &'a str,
    total_minor: u64,
    currency: &'a str,
    item_count: u32,
    #[schema(value_type = Option<String>)]
    thumbnail_url: Option<SizedImage<'a>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SlimRecommendation<'a> {
    product_id: Uuid,
    name: &'a str,
    price_minor: u64,
    currency: &'a str,
    #[schema(value_type = String)]
    image_url: SizedImage<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardQuery {
    dpr: Option<String>,
}

fn shape_user<'a>(user: &'a Profile, images: ImageSizing) -> MobileUser<'a> {
    MobileUser {
        id: user.id,
        name: &user.display_name,
        avatar_url: images.sized(&user.avatar_url, 48),
        preferences: MobilePreferences {
            language: &user.preferences.language,
            currency: &user.preferences.currency,
            theme: &user.preferences.theme,
            push: user.preferences.notifications.push,
        },
    }
}

fn shape_order(order: &Order, images: ImageSizing) -> SlimOrder<'_> {
    SlimOrder {
        id: order.id,
        status: &order.status,
        // The app shows the day only.
        placed_at: order.created_at.get(..10).unwrap_or(&order.created_at),
        total_minor: order.total_minor,
        currency: &order.currency,
        item_count: order.items.iter().map(|i| i.quantity).sum(),
        thumbnail_url: order.items.first().map(|i| images.sized(&i.image_url, 40)),
    }
}

fn shape_recommendation(r: &Recommendation, images: ImageSizing) -> SlimRecommendation<'_> {
    SlimRecommendation {
        product_id: r.product_id,
        name: &r.name,
        price_minor: r.price_minor,
        currency: &r.currency,
        image_url: images.sized(&r.image_url, 120),
    }
}

/// What the ETag covers: the content, not the metadata's generation
/// timestamp (an unchanged dashboard must revalidate as unchanged).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Content<'a, 'b> {
    user: &'b MobileUser<'a>,
    recent_orders: &'b Option<Vec<SlimOrder<'a>>>,
    recommendations: &'b Option<Vec<SlimRecommendation<'a>>>,
}

/// The body as sent, serialised once, and its strong ETag: a hash of the
/// sent bytes up to the metadata, and of which sections failed.
fn serialise(body: &Dashboard<'_>) -> Result<(Vec<u8>, HeaderValue), serde_json::Error> {
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
        ("dpr" = Option<f64>, Query, minimum = 1, maximum = 4, example = 2, description = "Device pixel ratio of the image URLs, 1 to 4 (anything else is a 400); the `Sec-CH-DPR` or `DPR` client hint when absent, else 2"),
        ("Sec-CH-DPR" = Option<f64>, Header, minimum = 1, maximum = 4, description = "Client hint: the device pixel ratio (a value out of range is ignored, as a hint)"),
        ("DPR" = Option<f64>, Header, minimum = 1, maximum = 4, description = "Client hint: the device pixel ratio (a value out of range is ignored, as a hint)"),
        ("Save-Data" = Option<String>, Header, description = "`on`: images at a ratio of 1 and lower quality (any other value is ignored)"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of earlier answers: 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "The dashboard", body = Dashboard<'static>,
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
            .cached(&fragments::PROFILE, &user_id)
            .run(app.users.get_as::<Profile>(&ctx, user_id)),
        agg.optional("orders")
            .cached(&fragments::ORDERS, &(user_id, ORDERS))
            .run(app.orders.recent_as::<OrderPage>(&ctx, user_id, ORDERS)),
        agg.optional("recommendations")
            .cached(&fragments::RECOMMENDATIONS, &(user_id, RECOMMENDATIONS))
            .run(app.recommendations.for_user_as::<RecommendationList>(
                &ctx,
                user_id,
                RECOMMENDATIONS
            )),
    );
    let user = user.required()?;
    let (orders, recommendations) = (orders.into_value(), recommendations.into_value());
    let shown = match app.flags.variant(&LAYOUT, &claims.sub).await {
        "compact" => COMPACT_ORDERS,
        _ => ORDERS as usize,
    };
    let body = Dashboard {
        user: shape_user(&user, images),
        recent_orders: orders.as_deref().map(|page| {
            page.orders
                .iter()
                .take(shown)
                .map(|o| shape_order(o, images))
                .collect()
        }),
        recommendations: recommendations.as_deref().map(|list| {
            list.recommendations
                .iter()
                .take(RECOMMENDATIONS as usize)
                .map(|r| shape_recommendation(r, images))
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
