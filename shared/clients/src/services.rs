//! One client per domain service, each over its upstream's stack from the
//! [`Registry`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bff_proto::catalog::v1 as catalog;
use bff_proto::inventory::v1 as inventory;
use bff_upstream::{
    BatchLoader, CallContext, Failure, GraphQlClient, GrpcClient, Registry, RegistryError,
    RestClient, Upstream, UpstreamError,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::models::{
    Batch, Image, OrderPage, Price, Product, RecommendationList, ReviewPage, Stock, User,
    WarehouseStock,
};
use crate::upstreams;

/// How long a batch loader waits for more keys after the first one, by
/// default: none, so the loads issued in the same turn of the scheduler are
/// batched at no added latency. (A 1 ms window, Tokio's timer step, added
/// 2 ms to the web product page's median at 400 requests/s.)
pub const BATCH_WINDOW: Duration = Duration::ZERO;

/// The most keys one batch call carries (the services' own limit).
pub const MAX_BATCH: usize = 100;

fn subject(id: Uuid) -> Option<Arc<str>> {
    // Formatted on the stack: one allocation (the `Arc`), not two.
    let mut buf = Uuid::encode_buffer();
    Some(Arc::from(&*id.hyphenated().encode_lower(&mut buf)))
}

/// The user service.
#[derive(Debug, Clone)]
pub struct UserClient(RestClient);

impl UserClient {
    /// The client of the declared `user` upstream.
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Ok(UserClient(registry.rest(upstreams::USER.name)?))
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.0.upstream()
    }

    /// A user's profile.
    pub fn get(&self, ctx: &CallContext, id: Uuid) -> Call<User> {
        self.get_as(ctx, id)
    }

    /// A user's profile decoded as `T`: a BFF that reads a few fields
    /// names only those, and the rest of the document is skipped without
    /// being kept.
    pub fn get_as<T>(&self, ctx: &CallContext, id: Uuid) -> Call<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let (rest, ctx) = (self.0.clone(), ctx.clone());
        Box::pin(async move {
            rest.get_json(
                "get_user",
                &ctx,
                &["users", &id.to_string()],
                &[],
                subject(id),
            )
            .await
        })
    }
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderClient(RestClient);

impl OrderClient {
    /// The client of the declared `order` upstream.
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Ok(OrderClient(registry.rest(upstreams::ORDER.name)?))
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.0.upstream()
    }

    /// A user's latest `limit` orders.
    pub fn recent(&self, ctx: &CallContext, user: Uuid, limit: u32) -> Call<OrderPage> {
        self.recent_as(ctx, user, limit)
    }

    /// [`recent`](Self::recent) decoded as `T` (the fields a BFF reads).
    pub fn recent_as<T>(&self, ctx: &CallContext, user: Uuid, limit: u32) -> Call<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let (rest, ctx) = (self.0.clone(), ctx.clone());
        Box::pin(async move {
            let (id, limit) = (user.to_string(), limit.to_string());
            rest.get_json(
                "list_orders",
                &ctx,
                &["orders"],
                &[("user_id", &id), ("limit", &limit)],
                subject(user),
            )
            .await
        })
    }
}

/// The recommendation service.
#[derive(Debug, Clone)]
pub struct RecommendationClient(RestClient);

impl RecommendationClient {
    /// The client of the declared `recommendation` upstream.
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Ok(RecommendationClient(
            registry.rest(upstreams::RECOMMENDATION.name)?,
        ))
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.0.upstream()
    }

    /// The best `limit` recommendations for a user.
    pub fn for_user(&self, ctx: &CallContext, user: Uuid, limit: u32) -> Call<RecommendationList> {
        self.for_user_as(ctx, user, limit)
    }

    /// [`for_user`](Self::for_user) decoded as `T` (the fields a BFF reads).
    pub fn for_user_as<T>(&self, ctx: &CallContext, user: Uuid, limit: u32) -> Call<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let (rest, ctx) = (self.0.clone(), ctx.clone());
        Box::pin(async move {
            let (id, limit) = (user.to_string(), limit.to_string());
            rest.get_json(
                "list_recommendations",
                &ctx,
                &["recommendations"],
                &[("user_id", &id), ("limit", &limit)],
                subject(user),
            )
            .await
        })
    }
}

/// The review service.
#[derive(Debug, Clone)]
pub struct ReviewClient(RestClient);

impl ReviewClient {
    /// The client of the declared `review` upstream.
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Ok(ReviewClient(registry.rest(upstreams::REVIEW.name)?))
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.0.upstream()
    }

    /// The latest `limit` reviews of a product.
    pub fn for_product(&self, ctx: &CallContext, product: Uuid, limit: u32) -> Call<ReviewPage> {
        let (rest, ctx) = (self.0.clone(), ctx.clone());
        Box::pin(async move {
            let (product, limit) = (product.to_string(), limit.to_string());
            rest.get_json(
                "list_reviews",
                &ctx,
                &["reviews"],
                &[("product_id", &product), ("limit", &limit)],
                None,
            )
            .await
        })
    }
}

fn parse_uuid(upstream: &'static str, raw: &str) -> Result<Uuid, UpstreamError> {
    Uuid::try_parse(raw).map_err(|_| {
        UpstreamError::new(
            upstream,
            Failure::InvalidResponse,
            format!("bad id {raw:?}"),
        )
    })
}

fn parse_missing(upstream: &'static str, raw: &[String]) -> Result<Vec<Uuid>, UpstreamError> {
    raw.iter().map(|r| parse_uuid(upstream, r)).collect()
}

fn not_found(upstream: &'static str, what: &str, id: Uuid) -> UpstreamError {
    UpstreamError::new(upstream, Failure::NotFound, format!("no {what} {id}"))
}

/// A call in flight. It owns what it needs (clients and contexts are cheap
/// to clone), so the fragment cache can finish it in the background and
/// share it between callers.
pub type Call<T> = futures::future::BoxFuture<'static, Result<T, UpstreamError>>;

fn load_one<V>(
    loader: &BatchLoader<Uuid, V>,
    upstream: &'static str,
    what: &'static str,
    ctx: &CallContext,
    id: Uuid,
) -> Call<V>
where
    V: Clone + Send + Sync + 'static,
{
    let (loader, ctx) = (loader.clone(), ctx.clone());
    Box::pin(async move {
        loader
            .load(&ctx, id)
            .await?
            .ok_or_else(|| not_found(upstream, what, id))
    })
}

fn load_many<V>(
    loader: &BatchLoader<Uuid, V>,
    ctx: &CallContext,
    ids: Vec<Uuid>,
) -> Call<HashMap<Uuid, V>>
where
    V: Clone + Send + Sync + 'static,
{
    let (loader, ctx) = (loader.clone(), ctx.clone());
    Box::pin(async move { loader.load_many(&ctx, &ids).await })
}

/// Splits a loader's answer into what was found and what is missing, in
/// the order asked.
fn batch_of<T>(ids: &[Uuid], mut found: HashMap<Uuid, T>) -> Batch<T> {
    let mut batch = Batch {
        found: Vec::with_capacity(found.len()),
        missing: Vec::new(),
    };
    for id in ids {
        match found.remove(id) {
            Some(v) => batch.found.push(v),
            None => batch.missing.push(*id),
        }
    }
    batch
}

/// The product service (gRPC).
#[derive(Debug, Clone)]
pub struct ProductClient {
    grpc: GrpcClient,
    loader: BatchLoader<Uuid, Product>,
}

fn product(upstream: &'static str, p: catalog::Product) -> Result<Product, UpstreamError> {
    Ok(Product {
        id: parse_uuid(upstream, &p.id)?,
        sku: p.sku,
        name: p.name,
        description: p.description,
        brand: p.brand,
        category: p.category,
        images: p
            .images
            .into_iter()
            .map(|i| Image {
                url: i.url,
                alt: i.alt,
            })
            .collect(),
        attributes: p.attributes.into_iter().collect(),
        rating_average: p.rating_average,
        rating_count: p.rating_count,
    })
}

impl ProductClient {
    /// The client of the declared upstream, batching loads over
    /// [`BATCH_WINDOW`].
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Self::with_batch_window(registry, BATCH_WINDOW)
    }

    /// The client of the declared `product` upstream, batching loads that arrive
    /// within `window` of each other.
    pub fn with_batch_window(registry: &Registry, window: Duration) -> Result<Self, RegistryError> {
        let grpc = registry.grpc(upstreams::PRODUCT.name)?;
        let batch = grpc.clone();
        let loader = BatchLoader::new("products", window, MAX_BATCH, move |ctx, ids: Vec<Uuid>| {
            let grpc = batch.clone();
            async move {
                let found = Self::fetch_batch(&grpc, &ctx, &ids).await?;
                Ok(found.found.into_iter().map(|p| (p.id, p)).collect())
            }
        });
        Ok(ProductClient { grpc, loader })
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.grpc.upstream()
    }

    /// One product (`GetProduct`).
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Product, UpstreamError> {
        let name = self.upstream().name();
        let response: catalog::Product = self
            .grpc
            .unary(
                "/catalog.v1.ProductService/GetProduct",
                "GetProduct",
                ctx,
                &catalog::GetProductRequest { id: id.to_string() },
                true,
            )
            .await?;
        product(name, response)
    }

    async fn fetch_batch(
        grpc: &GrpcClient,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Product>, UpstreamError> {
        let name = grpc.upstream().name();
        let ids = ids.iter().map(Uuid::to_string).collect();
        let response: catalog::BatchGetProductsResponse = grpc
            .unary(
                "/catalog.v1.ProductService/BatchGetProducts",
                "BatchGetProducts",
                ctx,
                &catalog::BatchGetProductsRequest { ids },
                true,
            )
            .await?;
        Ok(Batch {
            found: response
                .products
                .into_iter()
                .map(|p| product(name, p))
                .collect::<Result<_, _>>()?,
            missing: parse_missing(name, &response.missing_ids)?,
        })
    }

    /// Many products in one call (`BatchGetProducts`).
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Product>, UpstreamError> {
        Self::fetch_batch(&self.grpc, ctx, ids).await
    }

    /// One product, batched with the loads around it.
    pub fn load(&self, ctx: &CallContext, id: Uuid) -> Call<Product> {
        load_one(&self.loader, self.upstream().name(), "product", ctx, id)
    }

    /// Many products, batched with the loads around them.
    /// Ids the service does not know are absent from the answer.
    pub fn load_many(&self, ctx: &CallContext, ids: Vec<Uuid>) -> Call<HashMap<Uuid, Product>> {
        load_many(&self.loader, ctx, ids)
    }
}

/// The inventory service (gRPC).
#[derive(Debug, Clone)]
pub struct InventoryClient {
    grpc: GrpcClient,
    loader: BatchLoader<Uuid, Stock>,
    channel: tonic::transport::Channel,
}

/// What a stock watch reports.
#[derive(Debug, Clone, PartialEq)]
pub enum StockUpdate {
    /// The stock when the watch started (or after the service lost track).
    Snapshot(Stock),
    /// A change since.
    Changed(Stock),
}

/// An open `WatchStock` stream; ends with an error when the stream is cut.
#[derive(Debug)]
pub struct StockWatch {
    upstream: &'static str,
    stream: tonic::Streaming<inventory::StockEvent>,
}

impl StockWatch {
    /// The next update; `None` when the service ended the stream.
    pub async fn next(&mut self) -> Option<Result<StockUpdate, UpstreamError>> {
        let event = match self.stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(status) => return Some(Err(status_error(self.upstream, &status))),
        };
        let kind = event.kind();
        let Some(raw) = event.stock else {
            return Some(Err(UpstreamError::new(
                self.upstream,
                Failure::InvalidResponse,
                "a stock event without stock",
            )));
        };
        Some(stock(self.upstream, raw).map(|s| match kind {
            inventory::stock_event::Kind::Changed => StockUpdate::Changed(s),
            _ => StockUpdate::Snapshot(s),
        }))
    }
}

fn status_error(upstream: &'static str, status: &tonic::Status) -> UpstreamError {
    let failure = bff_upstream::transport::grpc::classify_code(status.code())
        .unwrap_or(Failure::InvalidResponse);
    UpstreamError::new(upstream, failure, status.message().to_owned())
}

fn stock(upstream: &'static str, s: inventory::Stock) -> Result<Stock, UpstreamError> {
    Ok(Stock {
        product_id: parse_uuid(upstream, &s.product_id)?,
        available: s.available,
        warehouses: s
            .warehouses
            .into_iter()
            .map(|w| WarehouseStock {
                location: w.location,
                available: w.available,
            })
            .collect(),
        version: s.version,
    })
}

impl InventoryClient {
    /// The client of the declared upstream, batching loads over
    /// [`BATCH_WINDOW`].
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Self::with_batch_window(registry, BATCH_WINDOW)
    }

    /// The client of the declared `inventory` upstream, batching loads that arrive
    /// within `window` of each other.
    pub fn with_batch_window(registry: &Registry, window: Duration) -> Result<Self, RegistryError> {
        let grpc = registry.grpc(upstreams::INVENTORY.name)?;
        let batch = grpc.clone();
        let loader = BatchLoader::new("stock", window, MAX_BATCH, move |ctx, ids: Vec<Uuid>| {
            let grpc = batch.clone();
            async move {
                let found = Self::fetch_batch(&grpc, &ctx, &ids).await?;
                Ok(found.found.into_iter().map(|s| (s.product_id, s)).collect())
            }
        });
        let channel = registry.grpc_channel(upstreams::INVENTORY.name)?;
        Ok(InventoryClient {
            grpc,
            loader,
            channel,
        })
    }

    /// Opens a `WatchStock` stream of one product: its current stock, then
    /// every change, until the stream is dropped or cut. A streaming call
    /// has no single answer for the stack's deadline, retry and breaker to
    /// work on; it shares the upstream's connection, and reconnecting is the
    /// caller's (the live hub's) job.
    pub async fn watch(&self, ctx: &CallContext, id: Uuid) -> Result<StockWatch, UpstreamError> {
        let name = self.upstream().name();
        let mut request = tonic::Request::new(inventory::WatchStockRequest {
            product_ids: vec![id.to_string()],
        });
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(ctx.headers());
        let mut client =
            inventory::inventory_service_client::InventoryServiceClient::new(self.channel.clone());
        let response = client
            .watch_stock(request)
            .await
            .map_err(|status| status_error(name, &status))?;
        Ok(StockWatch {
            upstream: name,
            stream: response.into_inner(),
        })
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.grpc.upstream()
    }

    /// Stock of one product (`GetStock`).
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Stock, UpstreamError> {
        let name = self.upstream().name();
        let response: inventory::Stock = self
            .grpc
            .unary(
                "/inventory.v1.InventoryService/GetStock",
                "GetStock",
                ctx,
                &inventory::GetStockRequest {
                    product_id: id.to_string(),
                },
                true,
            )
            .await?;
        stock(name, response)
    }

    async fn fetch_batch(
        grpc: &GrpcClient,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Stock>, UpstreamError> {
        let name = grpc.upstream().name();
        let product_ids = ids.iter().map(Uuid::to_string).collect();
        let response: inventory::BatchGetStockResponse = grpc
            .unary(
                "/inventory.v1.InventoryService/BatchGetStock",
                "BatchGetStock",
                ctx,
                &inventory::BatchGetStockRequest { product_ids },
                true,
            )
            .await?;
        Ok(Batch {
            found: response
                .stocks
                .into_iter()
                .map(|s| stock(name, s))
                .collect::<Result<_, _>>()?,
            missing: parse_missing(name, &response.missing_ids)?,
        })
    }

    /// Stock of many products in one call (`BatchGetStock`).
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Stock>, UpstreamError> {
        Self::fetch_batch(&self.grpc, ctx, ids).await
    }

    /// Stock of one product, batched with the loads around it.
    pub fn load(&self, ctx: &CallContext, id: Uuid) -> Call<Stock> {
        load_one(&self.loader, self.upstream().name(), "stock for", ctx, id)
    }

    /// Stock of many products, batched with the loads around them.
    /// Ids the service does not know are absent from the answer.
    pub fn load_many(&self, ctx: &CallContext, ids: Vec<Uuid>) -> Call<HashMap<Uuid, Stock>> {
        load_many(&self.loader, ctx, ids)
    }
}

/// The pricing service (GraphQL).
#[derive(Debug, Clone)]
pub struct PricingClient {
    graphql: GraphQlClient,
    loader: BatchLoader<Uuid, Price>,
}

#[derive(Debug, Clone, Deserialize)]
struct PricingData {
    pricing: Option<Price>,
}

#[derive(Debug, Clone, Deserialize)]
struct PricingsData {
    pricings: Vec<Price>,
}

/// The GraphQL query of one product's price (the `pricing` operation).
pub const PRICE_QUERY: &str = "query Price($id: ID!) { pricing(productId: $id) { productId current original currency discount } }";
/// The GraphQL query of many products' prices (the `pricings` operation).
pub const PRICES_QUERY: &str = "query Prices($ids: [ID!]!) { pricings(productIds: $ids) { productId current original currency discount } }";

impl PricingClient {
    /// The client of the declared upstream, batching loads over
    /// [`BATCH_WINDOW`].
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Self::with_batch_window(registry, BATCH_WINDOW)
    }

    /// The client of the declared `pricing` upstream, batching loads that arrive
    /// within `window` of each other.
    pub fn with_batch_window(registry: &Registry, window: Duration) -> Result<Self, RegistryError> {
        let graphql = registry.graphql(upstreams::PRICING.name)?;
        let batch = graphql.clone();
        let loader = BatchLoader::new("prices", window, MAX_BATCH, move |ctx, ids: Vec<Uuid>| {
            let graphql = batch.clone();
            async move {
                let data = Self::fetch_batch(&graphql, &ctx, &ids).await?;
                Ok(data
                    .pricings
                    .into_iter()
                    .map(|p| (p.product_id, p))
                    .collect())
            }
        });
        Ok(PricingClient { graphql, loader })
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.graphql.upstream()
    }

    /// Its GraphQL endpoint.
    pub fn endpoint(&self) -> &reqwest::Url {
        self.graphql.endpoint()
    }

    /// The price of one product.
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Price, UpstreamError> {
        let data: PricingData = self
            .graphql
            .query("pricing", ctx, PRICE_QUERY, serde_json::json!({ "id": id }))
            .await?;
        data.pricing
            .ok_or_else(|| not_found(self.upstream().name(), "price for", id))
    }

    async fn fetch_batch(
        graphql: &GraphQlClient,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<PricingsData, UpstreamError> {
        graphql
            .query(
                "pricings",
                ctx,
                PRICES_QUERY,
                serde_json::json!({ "ids": ids }),
            )
            .await
    }

    /// The prices of many products in one call.
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Price>, UpstreamError> {
        let data = Self::fetch_batch(&self.graphql, ctx, ids).await?;
        Ok(batch_of(
            ids,
            data.pricings
                .into_iter()
                .map(|p| (p.product_id, p))
                .collect(),
        ))
    }

    /// The price of one product, batched with the loads around it.
    pub fn load(&self, ctx: &CallContext, id: Uuid) -> Call<Price> {
        load_one(&self.loader, self.upstream().name(), "price for", ctx, id)
    }

    /// The prices of many products, batched with the loads around them.
    /// Ids the service does not know are absent from the answer.
    pub fn load_many(&self, ctx: &CallContext, ids: Vec<Uuid>) -> Call<HashMap<Uuid, Price>> {
        load_many(&self.loader, ctx, ids)
    }
}
