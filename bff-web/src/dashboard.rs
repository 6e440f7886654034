//! `GET /v1/dashboard`: the rich version.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use bff_aggregate::Metadata;
use bff_auth::Claims;
use bff_clients::models::{Address, Loyalty, Order, Recommendation, User};
use bff_edge::extract::Query;
use bff_edge::{Aggregate, RequestContext};
use bff_problem::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AppState, fragments};

const ORDERS: u32 = 5;
const RECOMMENDATIONS: u32 = 10;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Dashboard {
    user: Profile,
    recent_orders: Option<Vec<WebOrder>>,
    recommendations: Option<Vec<WebRecommendation>>,
    loyalty: WebLoyalty,
    metadata: Metadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Profile {
    id: Uuid,
    username: String,
    email: String,
    first_name: String,
    last_name: String,
    display_name: String,
    avatar_url: String,
    phone: String,
    locale: String,
    timezone: String,
    addresses: Vec<WebAddress>,
    preferences: WebPreferences,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebAddress {
    label: String,
    lines: Vec<String>,
    city: String,
    region: String,
    postal_code: String,
    country: String,
    default_shipping: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebPreferences {
    language: String,
    currency: String,
    theme: String,
    notifications: WebNotifications,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebNotifications {
    email: bool,
    push: bool,
    sms: bool,
    order_updates: bool,
    promotions: bool,
    price_drops: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebOrder {
    id: Uuid,
    number: String,
    status: String,
    created_at: String,
    currency: String,
    total_minor: u64,
    items: Vec<WebOrderItem>,
    carrier: String,
    tracking_url: Option<String>,
    estimated_delivery: String,
    delivered_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebOrderItem {
    product_id: Uuid,
    name: String,
    image_url: String,
    quantity: u32,
    unit_price_minor: u64,
    total_minor: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebRecommendation {
    product_id: Uuid,
    name: String,
    brand: String,
    image_url: String,
    price_minor: u64,
    currency: String,
    rating: f64,
    reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebLoyalty {
    tier: String,
    points: u64,
    next_tier: Option<String>,
    points_to_next_tier: u64,
    benefits: Vec<String>,
    member_since: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardQuery {}

fn address(a: Address) -> WebAddress {
    WebAddress {
        label: a.label,
        lines: std::iter::once(a.line1).chain(a.line2).collect(),
        city: a.city,
        region: a.region,
        postal_code: a.postal_code,
        country: a.country,
        default_shipping: a.is_default_shipping,
    }
}

fn loyalty(l: Loyalty) -> WebLoyalty {
    WebLoyalty {
        tier: l.tier,
        points: l.points,
        next_tier: l.next_tier,
        points_to_next_tier: l.points_to_next_tier,
        benefits: l.benefits,
        member_since: l.member_since,
    }
}

fn profile(u: User) -> (Profile, WebLoyalty) {
    let n = u.preferences.notifications;
    (
        Profile {
            id: u.id,
            username: u.username,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            display_name: u.display_name,
            avatar_url: u.avatar_url,
            phone: u.phone,
            locale: u.locale,
            timezone: u.timezone,
            addresses: u.addresses.into_iter().map(address).collect(),
            preferences: WebPreferences {
                language: u.preferences.language,
                currency: u.preferences.currency,
                theme: u.preferences.theme,
                notifications: WebNotifications {
                    email: n.email,
                    push: n.push,
                    sms: n.sms,
                    order_updates: n.order_updates,
                    promotions: n.promotions,
                    price_drops: n.price_drops,
                },
            },
        },
        loyalty(u.loyalty),
    )
}

fn order(o: Order) -> WebOrder {
    WebOrder {
        id: o.id,
        number: o.number,
        status: o.status,
        created_at: o.created_at,
        currency: o.currency,
        total_minor: o.total_minor,
        items: o
            .items
            .into_iter()
            .map(|i| WebOrderItem {
                product_id: i.product_id,
                name: i.name,
                image_url: i.image_url,
                quantity: i.quantity,
                unit_price_minor: i.unit_price_minor,
                total_minor: i.total_minor,
            })
            .collect(),
        carrier: o.shipping.carrier,
        tracking_url: o.shipping.tracking_url,
        estimated_delivery: o.shipping.estimated_delivery,
        delivered_at: o.shipping.delivered_at,
    }
}

fn recommendation(r: Recommendation) -> WebRecommendation {
    WebRecommendation {
        product_id: r.product_id,
        name: r.name,
        brand: r.brand,
        image_url: r.image_url,
        price_minor: r.price_minor,
        currency: r.currency,
        rating: r.rating_average,
        reason: r.reason,
    }
}

/// The signed-in user's dashboard, rich for the browser: full profile,
/// recent orders with their items, recommendations and loyalty; partial
/// when an optional section fails (`metadata`).
#[utoipa::path(
    get,
    path = "/v1/dashboard",
    tag = "dashboard",
    responses(
        (status = 200, description = "The dashboard", body = Dashboard),
        (status = 404, description = "The user does not exist"),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn dashboard(
    State(app): State<Arc<AppState>>,
    claims: Claims,
    ctx: RequestContext,
    agg: Aggregate,
    Query(_query): Query<DashboardQuery>,
) -> Result<Json<Dashboard>, ApiError> {
    let user_id = claims.user_id()?;
    let (user, orders, recommendations) = tokio::join!(
        agg.critical("user")
            .cached(&fragments::USER, &user_id)
            .run(app.users.get(&ctx, user_id)),
        agg.optional("orders")
            .cached(&fragments::ORDERS, &(user_id, ORDERS))
            .run(app.orders.recent(&ctx, user_id, ORDERS)),
        agg.optional("recommendations")
            .cached(&fragments::RECOMMENDATIONS, &(user_id, RECOMMENDATIONS))
            .run(app.recommendations.for_user(&ctx, user_id, RECOMMENDATIONS)),
    );
    let (user, loyalty) = profile(Arc::unwrap_or_clone(user.required()?));
    Ok(Json(Dashboard {
        user,
        loyalty,
        recent_orders: orders.into_value().map(|p| {
            Arc::unwrap_or_clone(p)
                .orders
                .into_iter()
                .map(order)
                .collect()
        }),
        recommendations: recommendations.into_value().map(|l| {
            Arc::unwrap_or_clone(l)
                .recommendations
                .into_iter()
                .map(recommendation)
                .collect()
        }),
        metadata: agg.metadata()?,
    }))
}
