//! The gRPC domain services: products and stock, each a [`ByIdRpc`] read
//! through the one [`ByIdClient`], and the inventory's `WatchStock` stream.

use bff_proto::catalog::v1 as catalog;
use bff_proto::inventory::v1 as inventory;
use bff_upstream::{CallContext, Failure, Registry, RegistryError, Upstream, UpstreamError};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

use crate::by_id::{ByIdClient, ByIdRpc, Call, parse_uuid};
use crate::models::{Batch, Image, Product, Stock, WarehouseStock};
use crate::upstreams;

/// The product service's reads (`catalog.v1.ProductService`).
#[derive(Debug)]
pub enum ProductRpc {}

impl ByIdRpc for ProductRpc {
    type Value = Product;
    type Raw = catalog::Product;
    type GetRequest = catalog::GetProductRequest;
    type BatchRequest = catalog::BatchGetProductsRequest;
    type BatchResponse = catalog::BatchGetProductsResponse;

    const UPSTREAM: &'static str = upstreams::PRODUCT.name;
    const GET: (&'static str, &'static str) =
        ("/catalog.v1.ProductService/GetProduct", "GetProduct");
    const BATCH_GET: (&'static str, &'static str) = (
        "/catalog.v1.ProductService/BatchGetProducts",
        "BatchGetProducts",
    );
    const LOADER: &'static str = "products";
    const WHAT: &'static str = "product";

    fn get_request(id: Uuid) -> Self::GetRequest {
        catalog::GetProductRequest { id: id.to_string() }
    }

    fn batch_request(ids: Vec<String>) -> Self::BatchRequest {
        catalog::BatchGetProductsRequest { ids }
    }

    fn split(response: Self::BatchResponse) -> (Vec<Self::Raw>, Vec<String>) {
        (response.products, response.missing_ids)
    }

    fn value(upstream: &'static str, p: catalog::Product) -> Result<Product, UpstreamError> {
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

    fn id(value: &Product) -> Uuid {
        value.id
    }
}

/// The product service (gRPC).
pub type ProductClient = ByIdClient<ProductRpc>;

/// The inventory service's reads (`inventory.v1.InventoryService`).
#[derive(Debug)]
pub enum StockRpc {}

impl ByIdRpc for StockRpc {
    type Value = Stock;
    type Raw = inventory::Stock;
    type GetRequest = inventory::GetStockRequest;
    type BatchRequest = inventory::BatchGetStockRequest;
    type BatchResponse = inventory::BatchGetStockResponse;

    const UPSTREAM: &'static str = upstreams::INVENTORY.name;
    const GET: (&'static str, &'static str) =
        ("/inventory.v1.InventoryService/GetStock", "GetStock");
    const BATCH_GET: (&'static str, &'static str) = (
        "/inventory.v1.InventoryService/BatchGetStock",
        "BatchGetStock",
    );
    const LOADER: &'static str = "stock";
    const WHAT: &'static str = "stock for";

    fn get_request(id: Uuid) -> Self::GetRequest {
        inventory::GetStockRequest {
            product_id: id.to_string(),
        }
    }

    fn batch_request(product_ids: Vec<String>) -> Self::BatchRequest {
        inventory::BatchGetStockRequest { product_ids }
    }

    fn split(response: Self::BatchResponse) -> (Vec<Self::Raw>, Vec<String>) {
        (response.stocks, response.missing_ids)
    }

    fn value(upstream: &'static str, s: inventory::Stock) -> Result<Stock, UpstreamError> {
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

    fn id(value: &Stock) -> Uuid {
        value.product_id
    }
}

/// The inventory service (gRPC): stock read by id, and watched.
#[derive(Debug, Clone)]
pub struct InventoryClient {
    reads: ByIdClient<StockRpc>,
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
        Some(StockRpc::value(self.upstream, raw).map(|s| match kind {
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

impl InventoryClient {
    /// The client of the declared upstream, batching loads over
    /// [`crate::BATCH_WINDOW`].
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Self::with_batch_window(registry, crate::BATCH_WINDOW)
    }

    /// The client of the declared `inventory` upstream, batching loads that
    /// arrive within `window` of each other.
    pub fn with_batch_window(registry: &Registry, window: Duration) -> Result<Self, RegistryError> {
        Ok(InventoryClient {
            reads: ByIdClient::with_batch_window(registry, window)?,
            channel: registry.grpc_channel(upstreams::INVENTORY.name)?,
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
        self.reads.upstream()
    }

    /// Stock of one product (`GetStock`).
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Stock, UpstreamError> {
        self.reads.get(ctx, id).await
    }

    /// Stock of many products in one call (`BatchGetStock`).
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Stock>, UpstreamError> {
        self.reads.batch(ctx, ids).await
    }

    /// Stock of one product, batched with the loads around it.
    pub fn load(&self, ctx: &CallContext, id: Uuid) -> Call<Stock> {
        self.reads.load(ctx, id)
    }

    /// Stock of many products, batched with the loads around them.
    /// Ids the service does not know are absent from the answer.
    pub fn load_many(&self, ctx: &CallContext, ids: Vec<Uuid>) -> Call<HashMap<Uuid, Stock>> {
        self.reads.load_many(ctx, ids)
    }
}
