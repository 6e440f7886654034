//! One client per domain service, each over its upstream's stack from the
//! [`Registry`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bff_upstream::{
    BatchLoader, CallContext, GraphQlClient, Registry, RegistryError, RestClient, Upstream,
    UpstreamError,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::by_id::{Call, load_many, load_one, not_found};
use crate::models::{Batch, OrderPage, Price, RecommendationList, ReviewPage, User};
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
