//! GraphQL over HTTP, on the shared pool.

use std::sync::Arc;

use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::CallContext;
use crate::error::{Failure, UpstreamError};
use crate::policy::Upstream;
use crate::rest::{HttpClient, decode, send};

/// A GraphQL endpoint (`POST {query, variables}`).
#[derive(Debug, Clone)]
pub struct GraphQlClient {
    http: HttpClient,
    endpoint: Url,
    upstream: Arc<Upstream>,
}

#[derive(Serialize)]
struct Request<'a, V> {
    query: &'a str,
    variables: V,
}

#[derive(serde::Deserialize)]
struct Response<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

#[derive(serde::Deserialize)]
struct GraphQlError {
    message: String,
}

impl GraphQlClient {
    /// A client for `endpoint` (`http://127.0.0.1:7005/graphql`).
    pub fn new(http: HttpClient, endpoint: Url, upstream: Arc<Upstream>) -> Self {
        GraphQlClient {
            http,
            endpoint,
            upstream,
        }
    }

    /// The policy of this upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Runs `query` with `variables`; `data` is decoded as `T`. GraphQL
    /// errors without data are an `upstream_error`.
    pub async fn query<V: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        query: &str,
        variables: V,
    ) -> Result<T, UpstreamError> {
        let name = self.upstream.name();
        let request = self
            .http
            .reqwest()
            .post(self.endpoint.clone())
            .headers(ctx.headers())
            .json(&Request { query, variables });
        self.upstream
            .call(operation, async move {
                let body = send(name, request).await?;
                let decoded: Response<T> = decode(name, &body)?;
                match decoded.data {
                    Some(data) if decoded.errors.is_empty() => Ok(data),
                    _ => {
                        let messages: Vec<String> =
                            decoded.errors.into_iter().map(|e| e.message).collect();
                        Err(UpstreamError::new(
                            name,
                            Failure::Status(200),
                            format!("graphql errors: {}", messages.join("; ")),
                        ))
                    }
                }
            })
            .await
    }
}
