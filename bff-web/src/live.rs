//! `GET /v1/products/{productId}/live`: a product's price and stock as they
//! change, over Server-Sent Events or a WebSocket.
//!
//! Browsers cannot speak gRPC streaming, so this is where the inventory
//! service's `WatchStock` stream and the pricing service's change events
//! become something a browser can hold open. However many browsers watch
//! a product, this replica holds **one** `WatchStock` stream for it (a
//! [`Hub`] topic, opened with the first watcher and closed after the last)
//! and **one** price feed for every product (the Redis channel when
//! `REDIS_URL` is set, else the pricing service's event stream). A lost
//! upstream stream is reconnected with jittered backoff; meanwhile the
//! watchers get a `degraded` event, and `recovered` (with the current
//! value) once it is back.
//!
//! Every client gets a `snapshot` first (price and stock from the same
//! cached sections as the product page), then `price` and `stock` events,
//! each with an id to resume from, and `heartbeat`s. The transport, limits,
//! lifetimes and drain are [`bff_live`]'s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bff_aggregate::{Aggregation, Deadlines};
use bff_auth::Claims;
use bff_cache::tiered::FragmentStore;
use bff_clients::models::{Price, Stock};
use bff_clients::{FeedEvent, InventoryClient, PriceFeed, PricingClient, StockUpdate, StockWatch};
use bff_edge::extract::{Query, parse_uuid};
use bff_edge::{Aggregate, RequestContext};
use bff_live::{
    Delivery, EventId, Followed, Frame, Hub, HubConfig, Publisher, Reconnecting, Session,
    SnapshotFn, Streams,
};
use bff_problem::{ApiError, FieldError};
use bff_telemetry::names;
use bff_upstream::CallContext;
use futures::StreamExt;
use http::HeaderMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::product::{
    PricingSection, WebInventory, inventory, pricing, pricing_section, product_section,
    stock_section,
};
use crate::{AppState, fragments};

/// The scope a token needs to watch.
const SCOPE: &str = "live";
/// The route, as metrics label the snapshot's sections.
const ROUTE: &str = "/v1/products/{productId}/live";
/// How long opening an upstream stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long reloading a value after a lost stream may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// The live side of the web BFF: the product hub and the process's streams.
#[derive(Clone)]
pub(crate) struct Live {
    hub: Hub<Uuid, Frame>,
    streams: Streams,
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

/// Where live values come from.
struct Sources {
    inventory: InventoryClient,
    pricing: PricingClient,
    fragments: FragmentStore,
    deadlines: Deadlines,
    prices: Option<PriceHub>,
}

/// The one price feed of the process, shared by every watched product.
struct PriceHub {
    hub: Hub<(), FeedEvent>,
    lost: Arc<Mutex<Option<String>>>,
}

impl Live {
    pub(crate) fn new(
        streams: Streams,
        inventory: InventoryClient,
        pricing: PricingClient,
        fragments: FragmentStore,
        deadlines: Deadlines,
        feed: Option<PriceFeed>,
    ) -> Self {
        let config = *streams.config();
        let prices = feed.map(|feed| {
            let lost = Arc::new(Mutex::new(None));
            let state = lost.clone();
            let hub = Hub::new(
                HubConfig {
                    buffer: 1024,
                    replay: 0,
                    linger: config.linger,
                },
                move |(), publisher: Publisher<(), FeedEvent>| {
                    let (feed, state) = (feed.clone(), state.clone());
                    follow_prices(feed, state, publisher)
                },
            );
            PriceHub { hub, lost }
        });
        let sources = Arc::new(Sources {
            inventory,
            pricing,
            fragments,
            deadlines,
            prices,
        });
        let watched = sources.clone();
        let hub = Hub::new(
            HubConfig {
                buffer: config.buffer,
                replay: config.replay,
                linger: config.linger,
            },
            move |id: Uuid, publisher| watch_product(watched.clone(), id, publisher),
        );
        Live {
            hub,
            streams,
            sources,
        }
    }
}

/// Follows the price feed for the price hub, until nobody watches.
async fn follow_prices(
    feed: PriceFeed,
    lost: Arc<Mutex<Option<String>>>,
    publisher: Publisher<(), FeedEvent>,
) {
    *lost.lock() = None;
    let (events, mut received) = mpsc::channel(256);
    let forward = async {
        while let Some(event) = received.recv().await {
            match &event {
                FeedEvent::Lost(reason) => {
                    metrics::counter!(names::LIVE_UPSTREAM_RECONNECTS, "source" => "prices")
                        .increment(1);
                    *lost.lock() = Some(reason.clone());
                }
                FeedEvent::Connected => {
                    *lost.lock() = None;
                }
                FeedEvent::Changed(_) => {}
            }
            publisher.publish(event);
        }
    };
    tokio::join!(feed.follow(events), forward);
}

// ---- events ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PriceBody {
    product_id: Uuid,
    current: u64,
    original: u64,
    currency: String,
    discount: f64,
}

impl PriceBody {
    fn new(product_id: Uuid, p: &Price) -> Self {
        PriceBody {
            product_id,
            current: p.current,
            original: p.original,
            currency: p.currency.clone(),
            discount: p.discount,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct StockBody {
    product_id: Uuid,
    #[serde(flatten)]
    stock: WebInventory,
    version: u64,
}

impl StockBody {
    fn new(s: Stock) -> Self {
        StockBody {
            product_id: s.product_id,
            version: s.version,
            stock: inventory(s),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SnapshotBody {
    product_id: Uuid,
    pricing: PricingSection,
    inventory: Option<WebInventory>,
    /// Sources whose value could not be read (`price`, `stock`).
    degraded: Vec<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DegradedBody {
    product_id: Uuid,
    /// Every source not followed now (`price`, `stock`).
    sources: Vec<&'static str>,
    reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecoveredBody {
    product_id: Uuid,
    /// The source followed again.
    source: &'static str,
    /// Sources still not followed.
    degraded: Vec<&'static str>,
}

/// The events of a live stream, as documented (each is sent on its own,
/// with `type`, an `id` to resume from, and a `timestamp`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
#[allow(dead_code)] // Only describes the stream in the OpenAPI document.
enum LiveEvent {
    /// The current price and stock, first (and again after missed events).
    Snapshot(SnapshotBody),
    /// A new price.
    Price(PriceBody),
    /// New stock levels.
    Stock(StockBody),
    /// An upstream stream was lost; values may be stale until `recovered`.
    Degraded(DegradedBody),
    /// An upstream stream is back (its current value follows).
    Recovered(RecoveredBody),
    /// The stream is alive (no id).
    Heartbeat {},
    /// The server ends the stream: `tokenExpired`, `maxLifetime`, `idle` or `shutdown`.
    End {
        /// Why.
        reason: String,
    },
}

fn publish<T: Serialize>(publisher: &Publisher<Uuid, Frame>, kind: &'static str, body: &T) {
    publisher.publish_with(|id| Frame::new(kind, Some(id), body));
}

// ---- the upstream side: one task per watched product ----

/// What a product's task follows, and what is lost.
struct Degraded {
    product_id: Uuid,
    sources: BTreeSet<&'static str>,
}

impl Degraded {
    fn lose(&mut self, publisher: &Publisher<Uuid, Frame>, source: &'static str, reason: String) {
        if self.sources.insert(source) {
            publish(
                publisher,
                "degraded",
                &DegradedBody {
                    product_id: self.product_id,
                    sources: self.sources.iter().copied().collect(),
                    reason,
                },
            );
        }
    }

    fn recover(&mut self, publisher: &Publisher<Uuid, Frame>, source: &'static str) -> bool {
        let was = self.sources.remove(source);
        if was {
            publish(
                publisher,
                "recovered",
                &RecoveredBody {
                    product_id: self.product_id,
                    source,
                    degraded: self.sources.iter().copied().collect(),
                },
            );
        }
        was
    }
}

/// Follows one product's stock (its own `WatchStock` stream) and price (the
/// shared feed), publishing to its watchers, until the last one leaves
/// (the hub aborts this task then).
async fn watch_product(sources: Arc<Sources>, id: Uuid, publisher: Publisher<Uuid, Frame>) {
    let ctx = CallContext::detached();
    let mut degraded = Degraded {
        product_id: id,
        sources: BTreeSet::new(),
    };
    let mut prices = sources.prices.as_ref().map(|p| {
        if let Some(reason) = p.lost.lock().clone() {
            degraded.lose(&publisher, "price", reason);
        }
        p.hub.subscribe((), None)
    });
    let inventory = sources.inventory.clone();
    let mut stock = Reconnecting::new("stock", OPEN_TIMEOUT, move || {
        let inventory = inventory.clone();
        async move {
            let watch = inventory.watch(&CallContext::detached(), id).await?;
            Ok::<_, bff_upstream::UpstreamError>(updates(watch))
        }
    });
    loop {
        let next_price = async {
            match prices.as_mut() {
                Some(sub) => sub.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            followed = stock.next() => match followed {
                Followed::Item(update) => {
                    let (StockUpdate::Snapshot(s) | StockUpdate::Changed(s)) = update;
                    // A snapshot after a reconnect may differ from the last
                    // value the watchers have: send it, after `recovered`.
                    degraded.recover(&publisher, "stock");
                    // Cached stock is stale from now on.
                    sources.fragments.invalidate(&fragments::STOCK, &id).await;
                    publish(&publisher, "stock", &StockBody::new(s));
                }
                Followed::Lost(reason) => degraded.lose(&publisher, "stock", reason),
            },
            delivery = next_price => match delivery {
                Some(Delivery::Event(event)) => match &event.payload {
                    FeedEvent::Changed(change) if change.product_id == id => {
                        publish(&publisher, "price", &PriceBody {
                            product_id: id,
                            current: change.current,
                            original: change.original,
                            currency: change.currency.clone(),
                            discount: change.discount,
                        });
                    }
                    FeedEvent::Changed(_) => {}
                    FeedEvent::Lost(reason) => degraded.lose(&publisher, "price", reason.clone()),
                    FeedEvent::Connected => {
                        if degraded.recover(&publisher, "price") {
                            reload_price(&sources, &ctx, id, &publisher).await;
                        }
                    }
                },
                // Changes were missed: send the current price.
                Some(Delivery::Resync(_)) => reload_price(&sources, &ctx, id, &publisher).await,
                None => prices = None,
            },
        }
    }
}

/// A stock watch as a stream, for [`Reconnecting`].
fn updates(
    watch: StockWatch,
) -> futures::stream::BoxStream<'static, Result<StockUpdate, bff_upstream::UpstreamError>> {
    futures::stream::unfold(watch, |mut watch| async move {
        watch.next().await.map(|update| (update, watch))
    })
    .boxed()
}

/// The current price, after changes may have been missed.
async fn reload_price(
    sources: &Sources,
    ctx: &CallContext,
    id: Uuid,
    publisher: &Publisher<Uuid, Frame>,
) {
    sources.fragments.invalidate(&fragments::PRICE, &id).await;
    match tokio::time::timeout(RELOAD_TIMEOUT, sources.pricing.load(ctx, id)).await {
        Ok(Ok(price)) => publish(publisher, "price", &PriceBody::new(id, &price)),
        Ok(Err(error)) => tracing::warn!(product = %id, %error, "price reload failed"),
        Err(_) => tracing::warn!(product = %id, "price reload timed out"),
    }
}

impl Sources {
    /// Price and stock from the product page's sections (cached the same
    /// way), covering events up to `position`.
    async fn snapshot(&self, id: Uuid, position: Option<EventId>) -> Frame {
        let agg = Aggregation::new(self.fragments.clone(), self.deadlines, ROUTE).traced(false);
        let ctx = CallContext::detached();
        let (price, stock) = tokio::join!(
            pricing_section(&agg, &self.pricing, &ctx, id),
            stock_section(&agg, &self.inventory, &ctx, id),
        );
        let price = price.into_value().map(Arc::unwrap_or_clone);
        let stock = stock.into_value().map(Arc::unwrap_or_clone);
        let mut degraded = Vec::new();
        if price.is_none() {
            degraded.push("price");
        }
        if stock.is_none() {
            degraded.push("stock");
        }
        Frame::new(
            "snapshot",
            position,
            &SnapshotBody {
                product_id: id,
                pricing: pricing(price),
                inventory: stock.map(inventory),
                degraded,
            },
        )
    }
}

// ---- the client side ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LiveQuery {
    last_event_id: Option<String>,
}

/// The event id to resume after: `Last-Event-ID` (what `EventSource`
/// sends by itself) or `lastEventId` (what a WebSocket client can send).
fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Result<Option<EventId>, FieldError> {
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| FieldError::new("Last-Event-ID", "not an event id"))
        })
        .transpose()?;
    let (field, raw) = match (header, query) {
        (Some(h), _) => ("Last-Event-ID", h),
        (None, Some(q)) => ("lastEventId", q),
        (None, None) => return Ok(None),
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|e: bff_live::BadEventId| FieldError::new(field, e.to_string()))
}

fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Live price and stock changes of one product: a WebSocket when the client
/// asks for an upgrade, Server-Sent Events otherwise. Scope `live`.
///
/// Events (JSON, camelCase, each with `type`, `id` and `timestamp`): a
/// `snapshot` first, then `price` and `stock` changes, `degraded` and
/// `recovered` when an upstream stream is lost and back, `heartbeat`s
/// (no id), and `end` with the reason when the server ends the stream
/// (`tokenExpired`, `maxLifetime`, `idle`, `shutdown`; a WebSocket then
/// closes with 4401, 1000 or 1001). Resume after a reconnect with
/// `Last-Event-ID` (SSE) or `?lastEventId=` (WebSocket): the events missed
/// within the replay window follow, or a new snapshot.
#[utoipa::path(
    get,
    path = "/v1/products/{product_id}/live",
    tag = "catalog",
    params(
        ("product_id" = String, Path, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", example = "0b6a6a34-5d2c-4b8e-9a53-1f0e3c2d4b5a", description = "The product's UUID (hyphenated)"),
        ("lastEventId" = Option<String>, Query, pattern = "^\\s*[0-9a-fA-F]{8}-[0-9]{1,20}\\s*$", example = "1f2e3d4c-42", description = "Resume after this event id (for WebSocket clients; SSE clients send `Last-Event-ID`); blank is none"),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^\\s*[0-9a-fA-F]{8}-[0-9]{1,20}\\s*$", example = "1f2e3d4c-42", description = "Resume after this event id (sent by `EventSource` on reconnect); blank is none"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: one event per change, named by its type, data as `LiveEvent`", content_type = "text/event-stream", body = LiveEvent),
        (status = 101, description = "Switched to a WebSocket (when asked with `Upgrade: websocket`): one text message per event, as `LiveEvent`; the server's close frame gives the reason"),
        (status = 404, description = "No such product"),
        (status = 503, description = "This replica holds its maximum of streams, or is shutting down"),
    ),
    security(("bearer" = ["live"])),
)]
pub(crate) async fn live(
    State(app): State<Arc<AppState>>,
    claims: Claims,
    ctx: RequestContext,
    agg: Aggregate,
    Path(raw_id): Path<String>,
    Query(query): Query<LiveQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    claims.require_scope(SCOPE)?;
    let mut errors = Vec::new();
    let id = parse_uuid("productId", &raw_id)
        .map_err(|e| errors.push(e))
        .ok();
    let resume = resume_from(request.headers(), query.last_event_id.as_deref())
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(id), Some(resume)) = (id, resume) else {
        return Err(ApiError::validation(errors));
    };
    // An unknown product is a 404 before anything is held or upgraded (a
    // product watched already is known).
    if !app.live.hub.is_open(&id) {
        product_section(&agg, &app.products, &ctx, id)
            .await
            .required()?;
    }
    let ticket = app.live.streams.admit(&claims.sub)?;
    let (mut parts, _) = request.into_parts();
    let upgrade = if wants_websocket(&parts.headers) {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Some(upgrade)
    } else {
        None
    };
    let sources = app.live.sources.clone();
    let snapshot: SnapshotFn = Arc::new(move |position| {
        let sources = sources.clone();
        Box::pin(async move { sources.snapshot(id, position).await })
    });
    let subscription = app.live.hub.subscribe(id, resume);
    let session = Session::new(
        ticket,
        subscription,
        snapshot,
        claims.expires_at,
        resume.is_some(),
    );
    Ok(match upgrade {
        Some(upgrade) => bff_live::websocket(upgrade, session),
        None => bff_live::sse(session).into_response(),
    })
}
