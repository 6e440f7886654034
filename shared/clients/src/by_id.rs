//! One client for every gRPC service read by id: `Get…` for one, `BatchGet…`
//! for many, and loads batched with the others in flight
//! ([`BatchLoader`]). A service is a [`ByIdRpc`]: its method names, its
//! messages and how an answer becomes a model; the calling, batching and
//! splitting into found and missing are written once, here.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use bff_upstream::{
    BatchLoader, CallContext, Failure, GrpcClient, Registry, RegistryError, Upstream, UpstreamError,
};
use uuid::Uuid;

use crate::models::Batch;

/// A call in flight. It owns what it needs (clients and contexts are cheap
/// to clone), so the fragment cache can finish it in the background and
/// share it between callers.
pub type Call<T> = futures::future::BoxFuture<'static, Result<T, UpstreamError>>;

/// A gRPC service whose values are read by id, one or many at a time.
pub trait ByIdRpc: Send + Sync + 'static {
    /// The model a BFF gets.
    type Value: Clone + Send + Sync + 'static;
    /// What `Get…` and each element of `BatchGet…` answer.
    type Raw: prost::Message + Default + Clone + Send + Sync + 'static;
    /// `Get…`'s request.
    type GetRequest: prost::Message;
    /// `BatchGet…`'s request.
    type BatchRequest: prost::Message;
    /// `BatchGet…`'s answer.
    type BatchResponse: prost::Message + Default + Clone + Send + Sync + 'static;

    /// The declared upstream.
    const UPSTREAM: &'static str;
    /// `Get…`: the gRPC path and the operation's name in telemetry.
    const GET: (&'static str, &'static str);
    /// `BatchGet…`: the gRPC path and the operation's name.
    const BATCH_GET: (&'static str, &'static str);
    /// The batch loader's name in telemetry.
    const LOADER: &'static str;
    /// What a missing id is called in the not-found error (`product`).
    const WHAT: &'static str;

    /// `Get…`'s request for `id`.
    fn get_request(id: Uuid) -> Self::GetRequest;
    /// `BatchGet…`'s request for `ids`.
    fn batch_request(ids: Vec<String>) -> Self::BatchRequest;
    /// A batch answer: the values found and the ids not.
    fn split(response: Self::BatchResponse) -> (Vec<Self::Raw>, Vec<String>);
    /// The model of an answer (`upstream` names it in errors).
    fn value(upstream: &'static str, raw: Self::Raw) -> Result<Self::Value, UpstreamError>;
    /// The id of a value.
    fn id(value: &Self::Value) -> Uuid;
}

/// The client of a [`ByIdRpc`] service.
pub struct ByIdClient<R: ByIdRpc> {
    grpc: GrpcClient,
    loader: BatchLoader<Uuid, R::Value>,
    rpc: PhantomData<fn() -> R>,
}

impl<R: ByIdRpc> Clone for ByIdClient<R> {
    fn clone(&self) -> Self {
        ByIdClient {
            grpc: self.grpc.clone(),
            loader: self.loader.clone(),
            rpc: PhantomData,
        }
    }
}

impl<R: ByIdRpc> std::fmt::Debug for ByIdClient<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByIdClient")
            .field("upstream", &R::UPSTREAM)
            .field("loader", &R::LOADER)
            .finish()
    }
}

pub(crate) fn parse_uuid(upstream: &'static str, raw: &str) -> Result<Uuid, UpstreamError> {
    Uuid::try_parse(raw).map_err(|_| {
        UpstreamError::new(
            upstream,
            Failure::InvalidResponse,
            format!("bad id {raw:?}"),
        )
    })
}

pub(crate) fn not_found(upstream: &'static str, what: &str, id: Uuid) -> UpstreamError {
    UpstreamError::new(upstream, Failure::NotFound, format!("no {what} {id}"))
}

/// One value from `loader`, an id it does not find an error.
pub(crate) fn load_one<V>(
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

/// Many values from `loader`; the ids it does not find are absent.
pub(crate) fn load_many<V>(
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

impl<R: ByIdRpc> ByIdClient<R> {
    /// The client of the declared upstream, batching loads over
    /// [`crate::BATCH_WINDOW`].
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Self::with_batch_window(registry, crate::BATCH_WINDOW)
    }

    /// The client of the declared upstream, batching loads that arrive
    /// within `window` of each other.
    pub fn with_batch_window(registry: &Registry, window: Duration) -> Result<Self, RegistryError> {
        let grpc = registry.grpc(R::UPSTREAM)?;
        let batch = grpc.clone();
        let loader = BatchLoader::new(
            R::LOADER,
            window,
            crate::MAX_BATCH,
            move |ctx, ids: Vec<Uuid>| {
                let grpc = batch.clone();
                async move {
                    let found = Self::fetch_batch(&grpc, &ctx, &ids).await?;
                    Ok(found.found.into_iter().map(|v| (R::id(&v), v)).collect())
                }
            },
        );
        Ok(ByIdClient {
            grpc,
            loader,
            rpc: PhantomData,
        })
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        self.grpc.upstream()
    }

    /// One value (`Get…`).
    pub async fn get(&self, ctx: &CallContext, id: Uuid) -> Result<R::Value, UpstreamError> {
        let (path, operation) = R::GET;
        let raw: R::Raw = self
            .grpc
            .unary(path, operation, ctx, &R::get_request(id), true)
            .await?;
        R::value(self.upstream().name(), raw)
    }

    async fn fetch_batch(
        grpc: &GrpcClient,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<R::Value>, UpstreamError> {
        let name = grpc.upstream().name();
        let (path, operation) = R::BATCH_GET;
        let request = R::batch_request(ids.iter().map(Uuid::to_string).collect());
        let response: R::BatchResponse = grpc.unary(path, operation, ctx, &request, true).await?;
        let (found, missing) = R::split(response);
        Ok(Batch {
            found: found
                .into_iter()
                .map(|raw| R::value(name, raw))
                .collect::<Result<_, _>>()?,
            missing: missing
                .iter()
                .map(|raw| parse_uuid(name, raw))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Many values in one call (`BatchGet…`).
    pub async fn batch(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<Batch<R::Value>, UpstreamError> {
        Self::fetch_batch(&self.grpc, ctx, ids).await
    }

    /// One value, batched with the loads around it.
    pub fn load(&self, ctx: &CallContext, id: Uuid) -> Call<R::Value> {
        load_one(&self.loader, self.upstream().name(), R::WHAT, ctx, id)
    }

    /// Many values, batched with the loads around them. Ids the service
    /// does not know are absent from the answer.
    pub fn load_many(&self, ctx: &CallContext, ids: Vec<Uuid>) -> Call<HashMap<Uuid, R::Value>> {
        load_many(&self.loader, ctx, ids)
    }
}
