//! The GraphQL pricing service and its price book.
//!
//! Prices change through the control API; every change is published as an
//! invalidation event: in-process (a broadcast channel, also served as
//! Server-Sent Events on `GET /events`) and, when a Redis URL is configured,
//! on the Redis pub/sub channel [`PRICE_EVENTS_CHANNEL`], so BFF replicas can
//! drop cached prices and push live updates.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, ID, Object, Schema, SimpleObject,
};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post_service};
use futures::Stream;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::data::{DemoData, Price, discounted, rfc3339};
use crate::faults::FieldError;
use crate::rest::MAX_BATCH;

/// The Redis pub/sub channel price changes are published on.
pub const PRICE_EVENTS_CHANNEL: &str = "demo.pricing.price-changed";

/// A price change, as published to watchers and on Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceChanged {
    /// Always `price.changed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The product whose price changed.
    pub product_id: Uuid,
    /// The new current price, in minor units.
    pub current: u64,
    /// The list price, in minor units.
    pub original: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Percentage off the list price.
    pub discount: f64,
    /// The price's version after the change.
    pub version: u64,
    /// When the change happened (RFC 3339).
    pub changed_at: String,
}

/// A change to a price, as the control API takes it; at least one field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceUpdate {
    current: Option<f64>,
    currency: Option<String>,
    discount: Option<f64>,
}

/// The highest price accepted, in minor units (ten million of a currency).
const MAX_PRICE_MINOR: f64 = 1_000_000_000.0;

impl PriceUpdate {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.current.is_none() && self.currency.is_none() && self.discount.is_none() {
            errors.push(FieldError::new(
                "body",
                "give at least one of current, currency, discount",
            ));
        }
        if let Some(c) = self.current
            && (c.fract() != 0.0 || !(0.0..=MAX_PRICE_MINOR).contains(&c))
        {
            errors.push(FieldError::new(
                "current",
                format!("must be a whole number of minor units (cents) from 0 to {MAX_PRICE_MINOR}, got {c}"),
            ));
        }
        if let Some(c) = &self.currency
            && (c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            errors.push(FieldError::new(
                "currency",
                "must be an ISO 4217 code such as EUR",
            ));
        }
        if let Some(d) = self.discount
            && !(0.0..=100.0).contains(&d)
        {
            errors.push(FieldError::new(
                "discount",
                format!("must be a percentage from 0 to 100, got {d}"),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Why a price update was refused.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// The body named invalid values.
    #[error("invalid price update")]
    Invalid(Vec<FieldError>),
    /// No such product.
    #[error("no price for product {0}")]
    NotFound(Uuid),
}

/// The current prices, mutable through the control API.
#[derive(Debug)]
pub struct PriceBook {
    prices: RwLock<HashMap<Uuid, Price>>,
    events: broadcast::Sender<PriceChanged>,
    redis: Option<redis::Client>,
}

impl PriceBook {
    /// A book holding the initial prices of the demo data; with a Redis client
    /// changes are also published there.
    pub fn new(data: &DemoData, redis: Option<redis::Client>) -> Self {
        PriceBook {
            prices: RwLock::new(
                data.initial_prices()
                    .iter()
                    .map(|p| (p.product_id, p.clone()))
                    .collect(),
            ),
            events: broadcast::Sender::new(1024),
            redis,
        }
    }

    /// The price of one product.
    pub fn get(&self, id: &Uuid) -> Option<Price> {
        self.prices.read().get(id).cloned()
    }

    /// Receives every later price change.
    pub fn subscribe(&self) -> broadcast::Receiver<PriceChanged> {
        self.events.subscribe()
    }

    /// Applies `update` and publishes the change.
    ///
    /// Setting `current` alone keeps the list price and recomputes the
    /// discount; setting `discount` alone recomputes `current` from the list
    /// price; setting both takes both as given.
    pub async fn update(&self, id: Uuid, update: PriceUpdate) -> Result<Price, PriceError> {
        update.validate().map_err(PriceError::Invalid)?;
        let price = {
            let mut prices = self.prices.write();
            let price = prices.get_mut(&id).ok_or(PriceError::NotFound(id))?;
            match (update.current, update.discount) {
                (Some(current), Some(discount)) => {
                    price.current = current as u64;
                    price.discount = discount;
                }
                (Some(current), None) => {
                    price.current = current as u64;
                    price.discount = if price.original == 0 || price.current >= price.original {
                        0.0
                    } else {
                        ((1.0 - price.current as f64 / price.original as f64) * 10_000.0).round()
                            / 100.0
                    };
                }
                (None, Some(discount)) => {
                    price.discount = discount;
                    price.current = discounted(price.original, discount);
                }
                (None, None) => {}
            }
            if let Some(currency) = update.currency {
                price.currency = currency;
            }
            price.version += 1;
            price.updated_at = rfc3339(time::OffsetDateTime::now_utc().unix_timestamp());
            price.clone()
        };
        self.publish(&price).await;
        Ok(price)
    }

    async fn publish(&self, price: &Price) {
        let event = PriceChanged {
            kind: "price.changed".to_owned(),
            product_id: price.product_id,
            current: price.current,
            original: price.original,
            currency: price.currency.clone(),
            discount: price.discount,
            version: price.version,
            changed_at: price.updated_at.clone(),
        };
        if let Some(client) = &self.redis {
            match serde_json::to_string(&event) {
                Ok(payload) => {
                    if let Err(error) = publish_redis(client, &payload).await {
                        // The in-process event still goes out; Redis being
                        // down must not fail the price change itself.
                        tracing::warn!(%error, "publishing the price change to Redis failed");
                    }
                }
                Err(error) => tracing::error!(%error, "serialising a price event failed"),
            }
        }
        let _ = self.events.send(event);
    }
}

async fn publish_redis(client: &redis::Client, payload: &str) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PUBLISH")
        .arg(PRICE_EVENTS_CHANNEL)
        .arg(payload)
        .query_async::<i64>(&mut conn)
        .await?;
    Ok(())
}

/// A price as GraphQL returns it.
#[derive(SimpleObject)]
struct PriceObject {
    product_id: ID,
    /// Current selling price in minor units.
    current: u64,
    /// List price in minor units.
    original: u64,
    currency: String,
    /// Percentage off the list price.
    discount: f64,
    version: u64,
    updated_at: String,
}

impl From<Price> for PriceObject {
    fn from(p: Price) -> Self {
        PriceObject {
            product_id: ID(p.product_id.to_string()),
            current: p.current,
            original: p.original,
            currency: p.currency,
            discount: p.discount,
            version: p.version,
            updated_at: p.updated_at,
        }
    }
}

/// The root query type of the pricing schema.
#[derive(Debug)]
pub struct Query;

fn bad_input(message: String) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

fn parse_graphql_id(field: &str, id: &ID) -> async_graphql::Result<Uuid> {
    if id.len() != 36 {
        return Err(bad_input(format!("{field} must be a UUID")));
    }
    Uuid::try_parse(id).map_err(|_| bad_input(format!("{field} must be a UUID")))
}

#[Object]
impl Query {
    /// The price of one product, or null when the product is unknown.
    async fn pricing(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
    ) -> async_graphql::Result<Option<PriceObject>> {
        let id = parse_graphql_id("productId", &product_id)?;
        Ok(ctx
            .data::<Arc<PriceBook>>()?
            .get(&id)
            .map(PriceObject::from))
    }

    /// The prices of up to 100 products in one call; unknown products are
    /// left out.
    async fn pricings(
        &self,
        ctx: &Context<'_>,
        product_ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<PriceObject>> {
        if product_ids.is_empty() || product_ids.len() > MAX_BATCH {
            return Err(bad_input(format!(
                "productIds must list 1 to {MAX_BATCH} ids, got {}",
                product_ids.len()
            )));
        }
        let book = ctx.data::<Arc<PriceBook>>()?;
        let mut out = Vec::with_capacity(product_ids.len());
        for id in &product_ids {
            if let Some(p) = book.get(&parse_graphql_id("productIds", id)?) {
                out.push(PriceObject::from(p));
            }
        }
        Ok(out)
    }
}

/// The GraphQL schema of the pricing service.
pub type PricingSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema over `book`, with depth and complexity limits so that a
/// hostile query cannot make the demo service spin.
pub fn schema(book: Arc<PriceBook>) -> PricingSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(book)
        .limit_depth(8)
        .limit_complexity(500)
        .finish()
}

/// `POST /graphql` and the price-change stream `GET /events` (SSE).
pub fn router(book: Arc<PriceBook>) -> Router {
    Router::new()
        .route("/graphql", post_service(GraphQL::new(schema(book.clone()))))
        .route("/events", get(events))
        .with_state(book)
}

async fn events(
    State(book): State<Arc<PriceBook>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(book.subscribe()).filter_map(|change| {
        let change = change.ok()?;
        Event::default()
            .event("price.changed")
            .json_data(&change)
            .ok()
            .map(Ok)
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
