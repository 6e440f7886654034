//! Typed clients over an [`Upstream`]'s stack, one per protocol. They build
//! the [`UpstreamRequest`], name its decoder, and hand back the decoded
//! value; every policy is in the stack.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method};
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::call::{
    CallInfo, Decoded, Decoder, Target, UpstreamRequest, decode_json, decode_json_within,
    decode_prost,
};
use crate::context::CallContext;
use crate::error::{Failure, UpstreamError};
use crate::stack::Upstream;

fn take<T: Clone + Send + Sync + 'static>(
    upstream: &'static str,
    decoded: Decoded,
) -> Result<T, UpstreamError> {
    decoded
        .downcast::<T>()
        .map(Arc::unwrap_or_clone)
        .map_err(|_| {
            UpstreamError::new(
                upstream,
                Failure::InvalidResponse,
                "decoded as another type",
            )
        })
}

/// The propagation headers of `ctx`, asking for JSON.
fn json_headers(ctx: &CallContext) -> http::HeaderMap {
    let mut headers = ctx.headers();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// A REST/JSON upstream: a base URL and the upstream's stack.
#[derive(Debug, Clone)]
pub struct RestClient {
    upstream: Upstream,
    base: Arc<Url>,
}

impl RestClient {
    /// A client for the service at `base` (`http://127.0.0.1:7001`).
    pub fn new(upstream: Upstream, base: Url) -> Self {
        RestClient {
            upstream,
            base: Arc::new(base),
        }
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// `GET base/segment/segment?query`, decoded from JSON. Path segments are
    /// percent-encoded here, so an id can never change the path. `subject`
    /// names whose data this is, for per-user reads.
    pub async fn get_json<T>(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        path: &[&str],
        query: &[(&str, &str)],
        subject: Option<Arc<str>>,
    ) -> Result<T, UpstreamError>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let decoded = self
            .get(operation, ctx, path, query, subject, decode_json::<T>)
            .await?;
        take(self.upstream.name(), decoded)
    }

    /// [`get_json`](Self::get_json) of a document refused when larger than
    /// `MAX` bytes, before it is parsed.
    pub async fn get_json_within<T, const MAX: usize>(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        path: &[&str],
    ) -> Result<T, UpstreamError>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let decoded = self
            .get(
                operation,
                ctx,
                path,
                &[],
                None,
                decode_json_within::<T, MAX>,
            )
            .await?;
        take(self.upstream.name(), decoded)
    }

    async fn get(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        path: &[&str],
        query: &[(&str, &str)],
        subject: Option<Arc<str>>,
        decode: Decoder,
    ) -> Result<Decoded, UpstreamError> {
        let name = self.upstream.name();
        let mut url = Url::clone(&self.base);
        url.path_segments_mut()
            .map_err(|()| {
                UpstreamError::new(name, Failure::Unavailable, "base URL cannot have a path")
            })?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let headers = json_headers(ctx);
        let response = self
            .upstream
            .call(UpstreamRequest {
                method: Method::GET,
                target: Target::Url(url),
                headers,
                body: Bytes::new(),
                info: CallInfo::new(operation, decode)
                    .idempotent()
                    .for_subject(subject),
            })
            .await?;
        Ok(response.decoded)
    }
}

/// A GraphQL endpoint (`POST {query, variables}`).
#[derive(Debug, Clone)]
pub struct GraphQlClient {
    upstream: Upstream,
    endpoint: Arc<Url>,
}

#[derive(Serialize)]
struct GraphQlRequest<'a, V> {
    query: &'a str,
    variables: V,
}

#[derive(serde::Deserialize)]
struct GraphQlResponse<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

#[derive(serde::Deserialize)]
struct GraphQlError {
    message: String,
}

/// The GraphQL decoder for `T`: `errors` make the call fail, even inside a
/// `200 OK`, so the breaker and the metrics see them.
fn decode_graphql<T>(body: &Bytes) -> Result<Decoded, (Failure, String)>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let response: GraphQlResponse<T> =
        serde_json::from_slice(body).map_err(|e| (Failure::InvalidResponse, e.to_string()))?;
    match response.data {
        Some(data) if response.errors.is_empty() => Ok(Arc::new(data)),
        _ => {
            let messages: Vec<String> = response.errors.into_iter().map(|e| e.message).collect();
            Err((
                Failure::GraphQl,
                format!("graphql errors: {}", messages.join("; ")),
            ))
        }
    }
}

impl GraphQlClient {
    /// A client for `endpoint` (`http://127.0.0.1:7005/graphql`).
    pub fn new(upstream: Upstream, endpoint: Url) -> Self {
        GraphQlClient {
            upstream,
            endpoint: Arc::new(endpoint),
        }
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The GraphQL endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Runs the read-only `query` with `variables`; `data` is decoded as
    /// `T`. Queries are idempotent: they may be retried and coalesced.
    pub async fn query<V, T>(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        query: &str,
        variables: V,
    ) -> Result<T, UpstreamError>
    where
        V: Serialize,
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let name = self.upstream.name();
        let body = serde_json::to_vec(&GraphQlRequest { query, variables })
            .map_err(|e| UpstreamError::new(name, Failure::InvalidResponse, e.to_string()))?;
        let headers = json_headers(ctx);
        let response = self
            .upstream
            .call(UpstreamRequest {
                method: Method::POST,
                target: Target::Url(Url::clone(&self.endpoint)),
                headers,
                body: Bytes::from(body),
                info: CallInfo::new(operation, decode_graphql::<T>).idempotent(),
            })
            .await?;
        take(name, response.decoded)
    }
}

/// A gRPC upstream: unary calls through its stack.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    upstream: Upstream,
}

impl GrpcClient {
    /// A client over `upstream`'s stack.
    pub fn new(upstream: Upstream) -> Self {
        GrpcClient { upstream }
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Calls `method` (`/pkg.Service/Method`) with `message`. `idempotent`
    /// reads may be retried and coalesced.
    pub async fn unary<Req, Resp>(
        &self,
        method: &'static str,
        operation: &'static str,
        ctx: &CallContext,
        message: &Req,
        idempotent: bool,
    ) -> Result<Resp, UpstreamError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default + Clone + Send + Sync + 'static,
    {
        let mut info = CallInfo::new(operation, decode_prost::<Resp>);
        info.idempotent = idempotent;
        let response = self
            .upstream
            .call(UpstreamRequest {
                method: Method::POST,
                target: Target::GrpcMethod(method),
                headers: ctx.headers(),
                body: Bytes::from(message.encode_to_vec()),
                info,
            })
            .await?;
        take(self.upstream.name(), response.decoded)
    }
}
