//! The gRPC demo services: the product catalogue and the inventory, whose
//! `WatchStock` stream the web BFF turns into live updates.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bff_proto::catalog::v1 as catalog;
use bff_proto::inventory::v1 as inventory;
use futures::{Stream, StreamExt};
use parking_lot::RwLock;
use rand::Rng;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::data::{DemoData, Product, StockLevel};
use crate::rest::MAX_BATCH;

fn timestamp(unix: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix,
        nanos: 0,
    }
}

fn parse_id(field: &str, raw: &str) -> Result<Uuid, Status> {
    if raw.len() != 36 {
        return Err(Status::invalid_argument(format!("{field} must be a UUID")));
    }
    Uuid::try_parse(raw).map_err(|_| Status::invalid_argument(format!("{field} must be a UUID")))
}

fn parse_ids(field: &str, raw: &[String]) -> Result<Vec<Uuid>, Status> {
    if raw.is_empty() || raw.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "{field} must list 1 to {MAX_BATCH} ids, got {}",
            raw.len()
        )));
    }
    raw.iter().map(|r| parse_id(field, r)).collect()
}

fn product_message(p: &Product) -> catalog::Product {
    catalog::Product {
        id: p.id.to_string(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        brand: p.brand.clone(),
        category: p.category.clone(),
        images: p
            .images
            .iter()
            .map(|i| catalog::Image {
                url: i.url.clone(),
                alt: i.alt.clone(),
                width: i.width,
                height: i.height,
            })
            .collect(),
        attributes: p
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tags: p.tags.clone(),
        rating_average: p.rating_average,
        rating_count: p.rating_count,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
    }
}

/// `catalog.v1.ProductService` over the demo data.
#[derive(Debug, Clone)]
pub struct ProductService {
    data: Arc<DemoData>,
}

impl ProductService {
    /// The service, ready to be wrapped in its generated server.
    pub fn new(data: Arc<DemoData>) -> Self {
        ProductService { data }
    }
}

#[tonic::async_trait]
impl catalog::product_service_server::ProductService for ProductService {
    async fn get_product(
        &self,
        request: Request<catalog::GetProductRequest>,
    ) -> Result<Response<catalog::Product>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let product = self
            .data
            .product(&id)
            .ok_or_else(|| Status::not_found(format!("no product with id {id}")))?;
        Ok(Response::new(product_message(product)))
    }

    async fn batch_get_products(
        &self,
        request: Request<catalog::BatchGetProductsRequest>,
    ) -> Result<Response<catalog::BatchGetProductsResponse>, Status> {
        let ids = parse_ids("ids", &request.get_ref().ids)?;
        let mut out = catalog::BatchGetProductsResponse::default();
        for id in ids {
            match self.data.product(&id) {
                Some(p) => out.products.push(product_message(p)),
                None => out.missing_ids.push(id.to_string()),
            }
        }
        Ok(Response::new(out))
    }
}

/// The live stock levels, changed by the control API and (in the devstack) by
/// a simulated trickle of orders; every change is broadcast to watchers.
#[derive(Debug)]
pub struct StockBook {
    levels: RwLock<HashMap<Uuid, StockLevel>>,
    changes: broadcast::Sender<StockLevel>,
}

impl StockBook {
    /// A book holding the initial stock of the demo data.
    pub fn new(data: &DemoData) -> Self {
        StockBook {
            levels: RwLock::new(
                data.initial_stock()
                    .iter()
                    .map(|s| (s.product_id, s.clone()))
                    .collect(),
            ),
            changes: broadcast::Sender::new(1024),
        }
    }

    /// The stock of one product.
    pub fn get(&self, id: &Uuid) -> Option<StockLevel> {
        self.levels.read().get(id).cloned()
    }

    /// Sets the available units of a product; the difference is booked to
    /// its first warehouse. Returns the new level, or `None` for an unknown
    /// product.
    pub fn set_available(&self, id: &Uuid, available: i64) -> Option<StockLevel> {
        self.update(id, |level| {
            let others: i64 = level.warehouses.iter().skip(1).map(|w| w.available).sum();
            if available >= others {
                level.warehouses[0].available = available - others;
            } else {
                for w in level.warehouses.iter_mut().skip(1) {
                    w.available = 0;
                }
                level.warehouses[0].available = available;
            }
        })
    }

    fn update(&self, id: &Uuid, change: impl FnOnce(&mut StockLevel)) -> Option<StockLevel> {
        let updated = {
            let mut levels = self.levels.write();
            let level = levels.get_mut(id)?;
            change(level);
            level.available = level.warehouses.iter().map(|w| w.available).sum();
            level.version += 1;
            level.updated_at = time::OffsetDateTime::now_utc().unix_timestamp();
            level.clone()
        };
        // No watcher is not an error.
        let _ = self.changes.send(updated.clone());
        Some(updated)
    }

    /// Changes a random product's stock every `every`, as orders and
    /// deliveries would, until the returned task is aborted.
    pub fn simulate(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (id, delta) = {
                    let levels = self.levels.read();
                    let mut rng = rand::thread_rng();
                    let n = rng.gen_range(0..levels.len().max(1));
                    let Some(id) = levels.keys().nth(n).copied() else {
                        continue;
                    };
                    (id, rng.gen_range(-3i64..=5))
                };
                self.update(&id, |level| {
                    let w = &mut level.warehouses[0];
                    w.available = (w.available + delta).max(0);
                });
            }
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<StockLevel> {
        self.changes.subscribe()
    }
}

fn stock_message(s: &StockLevel) -> inventory::Stock {
    inventory::Stock {
        product_id: s.product_id.to_string(),
        available: s.available,
        reserved: s.reserved,
        warehouses: s
            .warehouses
            .iter()
            .map(|w| inventory::WarehouseStock {
                warehouse_id: w.warehouse_id.clone(),
                location: w.location.clone(),
                available: w.available,
            })
            .collect(),
        version: s.version,
        updated_at: Some(timestamp(s.updated_at)),
    }
}

fn event(kind: inventory::stock_event::Kind, s: &StockLevel) -> inventory::StockEvent {
    inventory::StockEvent {
        kind: kind as i32,
        stock: Some(stock_message(s)),
    }
}

/// `inventory.v1.InventoryService` over a [`StockBook`].
#[derive(Debug, Clone)]
pub struct InventoryService {
    stock: Arc<StockBook>,
}

impl InventoryService {
    /// The service, ready to be wrapped in its generated server.
    pub fn new(stock: Arc<StockBook>) -> Self {
        InventoryService { stock }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<inventory::StockEvent, Status>> + Send>>;

#[tonic::async_trait]
impl inventory::inventory_service_server::InventoryService for InventoryService {
    async fn get_stock(
        &self,
        request: Request<inventory::GetStockRequest>,
    ) -> Result<Response<inventory::Stock>, Status> {
        let id = parse_id("product_id", &request.get_ref().product_id)?;
        let level = self
            .stock
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("no stock for product {id}")))?;
        Ok(Response::new(stock_message(&level)))
    }

    async fn batch_get_stock(
        &self,
        request: Request<inventory::BatchGetStockRequest>,
    ) -> Result<Response<inventory::BatchGetStockResponse>, Status> {
        let ids = parse_ids("product_ids", &request.get_ref().product_ids)?;
        let mut out = inventory::BatchGetStockResponse::default();
        for id in ids {
            match self.stock.get(&id) {
                Some(level) => out.stocks.push(stock_message(&level)),
                None => out.missing_ids.push(id.to_string()),
            }
        }
        Ok(Response::new(out))
    }

    type WatchStockStream = EventStream;

    async fn watch_stock(
        &self,
        request: Request<inventory::WatchStockRequest>,
    ) -> Result<Response<Self::WatchStockStream>, Status> {
        let ids = parse_ids("product_ids", &request.get_ref().product_ids)?;
        // Subscribe before taking the snapshot so that no change falls between.
        let changes = self.stock.subscribe();
        let mut snapshot = Vec::with_capacity(ids.len());
        for id in &ids {
            let level = self
                .stock
                .get(id)
                .ok_or_else(|| Status::not_found(format!("no stock for product {id}")))?;
            snapshot.push(Ok(event(inventory::stock_event::Kind::Snapshot, &level)));
        }
        let stock = self.stock.clone();
        let watched = ids.clone();
        let live = BroadcastStream::new(changes).filter_map(move |change| {
            let out = match change {
                Ok(level) if watched.contains(&level.product_id) => Some(vec![Ok(event(
                    inventory::stock_event::Kind::Changed,
                    &level,
                ))]),
                Ok(_) => None,
                // The watcher fell behind: send the current state of everything
                // it watches instead of the changes it missed.
                Err(BroadcastStreamRecvError::Lagged(_)) => Some(
                    watched
                        .iter()
                        .filter_map(|id| stock.get(id))
                        .map(|level| Ok(event(inventory::stock_event::Kind::Snapshot, &level)))
                        .collect(),
                ),
            };
            std::future::ready(out)
        });
        let stream = futures::stream::iter(snapshot).chain(live.flat_map(futures::stream::iter));
        Ok(Response::new(Box::pin(stream)))
    }
}
