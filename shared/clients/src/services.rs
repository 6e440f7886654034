//! One client per domain service.

use std::sync::Arc;

use bff_proto::catalog::v1 as catalog;
use bff_proto::catalog::v1::product_service_client::ProductServiceClient;
use bff_proto::inventory::v1 as inventory;
use bff_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use bff_upstream::{
    CallContext, Failure, GraphQlClient, RestClient, Upstream, UpstreamError, grpc,
};
use serde::Deserialize;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::models::{
    Batch, Image, OrderPage, Price, Product, RecommendationList, ReviewPage, Stock, User,
    WarehouseStock,
};

/// The user service.
#[derive(Debug, Clone)]
pub struct UserClient(RestClient);

impl UserClient {
    /// Over a REST client of the user service.
    pub fn new(rest: RestClient) -> Self {
        UserClient(rest)
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.0.upstream()
    }

    /// A user's profile.
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<User, UpstreamError> {
        self.0
            .get_json("get_user", ctx, &["users", &id.to_string()], &[])
            .await
    }
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderClient(RestClient);

impl OrderClient {
    /// Over a REST client of the order service.
    pub fn new(rest: RestClient) -> Self {
        OrderClient(rest)
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.0.upstream()
    }

    /// A user's latest `limit` orders.
    pub async fn recent(
        &self,
        ctx: &CallContext,
        user: Uuid,
        limit: u32,
    ) -> Result<OrderPage, UpstreamError> {
        let (user, limit) = (user.to_string(), limit.to_string());
        self.0
            .get_json(
                "list_orders",
                ctx,
                &["orders"],
                &[("user_id", &user), ("limit", &limit)],
            )
            .await
    }
}

/// The recommendation service.
#[derive(Debug, Clone)]
pub struct RecommendationClient(RestClient);

impl RecommendationClient {
    /// Over a REST client of the recommendation service.
    pub fn new(rest: RestClient) -> Self {
        RecommendationClient(rest)
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.0.upstream()
    }

    /// The best `limit` recommendations for a user.
    pub async fn for_user(
        &self,
        ctx: &CallContext,
        user: Uuid,
        limit: u32,
    ) -> Result<RecommendationList, UpstreamError> {
        let (user, limit) = (user.to_string(), limit.to_string());
        self.0
            .get_json(
                "list_recommendations",
                ctx,
                &["recommendations"],
                &[("user_id", &user), ("limit", &limit)],
            )
            .await
    }
}

/// The review service.
#[derive(Debug, Clone)]
pub struct ReviewClient(RestClient);

impl ReviewClient {
    /// Over a REST client of the review service.
    pub fn new(rest: RestClient) -> Self {
        ReviewClient(rest)
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.0.upstream()
    }

    /// The latest `limit` reviews of a product.
    pub async fn for_product(
        &self,
        ctx: &CallContext,
        product: Uuid,
        limit: u32,
    ) -> Result<ReviewPage, UpstreamError> {
        let (product, limit) = (product.to_string(), limit.to_string());
        self.0
            .get_json(
                "list_reviews",
                ctx,
                &["reviews"],
                &[("product_id", &product), ("limit", &limit)],
            )
            .await
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

/// The product service (gRPC).
#[derive(Debug, Clone)]
pub struct ProductClient {
    grpc: ProductServiceClient<Channel>,
    upstream: Arc<Upstream>,
    timeout: std::time::Duration,
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
    /// Over a channel to the product service.
    pub fn new(channel: Channel, upstream: Arc<Upstream>, timeout: std::time::Duration) -> Self {
        ProductClient {
            grpc: ProductServiceClient::new(channel),
            upstream,
            timeout,
        }
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// One product.
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Product, UpstreamError> {
        let name = self.upstream.name();
        let mut client = self.grpc.clone();
        let request = grpc::request(
            catalog::GetProductRequest { id: id.to_string() },
            ctx,
            self.timeout,
        );
        self.upstream
            .call("get_product", async move {
                let response = client
                    .get_product(request)
                    .await
                    .map_err(|s| grpc::failure(name, &s))?;
                product(name, response.into_inner())
            })
            .await
    }

    /// Many products in one call.
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Product>, UpstreamError> {
        let name = self.upstream.name();
        let mut client = self.grpc.clone();
        let ids = ids.iter().map(Uuid::to_string).collect();
        let request = grpc::request(catalog::BatchGetProductsRequest { ids }, ctx, self.timeout);
        self.upstream
            .call("batch_get_products", async move {
                let response = client
                    .batch_get_products(request)
                    .await
                    .map_err(|s| grpc::failure(name, &s))?
                    .into_inner();
                Ok(Batch {
                    found: response
                        .products
                        .into_iter()
                        .map(|p| product(name, p))
                        .collect::<Result<_, _>>()?,
                    missing: parse_missing(name, &response.missing_ids)?,
                })
            })
            .await
    }
}

/// The inventory service (gRPC).
#[derive(Debug, Clone)]
pub struct InventoryClient {
    grpc: InventoryServiceClient<Channel>,
    upstream: Arc<Upstream>,
    timeout: std::time::Duration,
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
    /// Over a channel to the inventory service.
    pub fn new(channel: Channel, upstream: Arc<Upstream>, timeout: std::time::Duration) -> Self {
        InventoryClient {
            grpc: InventoryServiceClient::new(channel),
            upstream,
            timeout,
        }
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Stock of one product.
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Stock, UpstreamError> {
        let name = self.upstream.name();
        let mut client = self.grpc.clone();
        let request = grpc::request(
            inventory::GetStockRequest {
                product_id: id.to_string(),
            },
            ctx,
            self.timeout,
        );
        self.upstream
            .call("get_stock", async move {
                let response = client
                    .get_stock(request)
                    .await
                    .map_err(|s| grpc::failure(name, &s))?;
                stock(name, response.into_inner())
            })
            .await
    }

    /// Stock of many products in one call.
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Stock>, UpstreamError> {
        let name = self.upstream.name();
        let mut client = self.grpc.clone();
        let product_ids = ids.iter().map(Uuid::to_string).collect();
        let request = grpc::request(
            inventory::BatchGetStockRequest { product_ids },
            ctx,
            self.timeout,
        );
        self.upstream
            .call("batch_get_stock", async move {
                let response = client
                    .batch_get_stock(request)
                    .await
                    .map_err(|s| grpc::failure(name, &s))?
                    .into_inner();
                Ok(Batch {
                    found: response
                        .stocks
                        .into_iter()
                        .map(|s| stock(name, s))
                        .collect::<Result<_, _>>()?,
                    missing: parse_missing(name, &response.missing_ids)?,
                })
            })
            .await
    }
}

/// The pricing service (GraphQL).
#[derive(Debug, Clone)]
pub struct PricingClient(GraphQlClient);

#[derive(Deserialize)]
struct PricingData {
    pricing: Option<Price>,
}

#[derive(Deserialize)]
struct PricingsData {
    pricings: Vec<Price>,
}

const PRICE_QUERY: &str = "query Price($id: ID!) { pricing(productId: $id) { productId current original currency discount } }";
const PRICES_QUERY: &str = "query Prices($ids: [ID!]!) { pricings(productIds: $ids) { productId current original currency discount } }";

impl PricingClient {
    /// Over a GraphQL client of the pricing service.
    pub fn new(graphql: GraphQlClient) -> Self {
        PricingClient(graphql)
    }

    /// The policy of the upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.0.upstream()
    }

    /// The price of one product.
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<Price, UpstreamError> {
        let data: PricingData = self
            .0
            .query("pricing", ctx, PRICE_QUERY, serde_json::json!({ "id": id }))
            .await?;
        data.pricing.ok_or_else(|| {
            UpstreamError::new(
                self.upstream().name(),
                Failure::NotFound,
                format!("no price for {id}"),
            )
        })
    }

    /// The prices of many products in one call.
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<Price>, UpstreamError> {
        let data: PricingsData = self
            .0
            .query(
                "pricings",
                ctx,
                PRICES_QUERY,
                serde_json::json!({ "ids": ids }),
            )
            .await?;
        let missing = ids
            .iter()
            .filter(|id| !data.pricings.iter().any(|p| p.product_id == **id))
            .copied()
            .collect();
        Ok(Batch {
            found: data.pricings,
            missing,
        })
    }
}
