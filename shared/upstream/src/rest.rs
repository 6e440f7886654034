//! REST/JSON calls over one pooled HTTP client.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::context::CallContext;
use crate::error::{Failure, UpstreamError};
use crate::policy::Upstream;

/// The largest upstream body read, so a misbehaving service cannot make the
/// BFF buffer without bound.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The one pooled HTTP client of a BFF process, shared by every REST and
/// GraphQL upstream: connections are reused across requests and upstreams.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// Builds the pool. Call once per process.
    pub fn new(connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        let inner = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bff-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient { inner })
    }

    /// The underlying client.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }
}

/// Maps a transport error of reqwest to a failure kind.
pub(crate) fn transport_failure(upstream: &'static str, error: &reqwest::Error) -> UpstreamError {
    let failure = if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Unavailable
    };
    UpstreamError::new(upstream, failure, error.to_string())
}

/// Maps an error status to a failure kind.
pub(crate) fn status_failure(upstream: &'static str, status: StatusCode) -> UpstreamError {
    let failure = match status {
        StatusCode::NOT_FOUND => Failure::NotFound,
        StatusCode::TOO_MANY_REQUESTS => Failure::RateLimited,
        StatusCode::GATEWAY_TIMEOUT => Failure::Timeout,
        s => Failure::Status(s.as_u16()),
    };
    UpstreamError::new(upstream, failure, format!("status {status}"))
}

/// Sends `request` and reads a successful answer's body; transport errors
/// and error statuses become failures of `upstream`.
pub(crate) async fn send(
    upstream: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Bytes, UpstreamError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_failure(upstream, &e))?;
    if !response.status().is_success() {
        return Err(status_failure(upstream, response.status()));
    }
    read_body(upstream, response).await
}

/// Decodes a JSON body; an undecodable one is an `InvalidResponse`.
pub(crate) fn decode<T: DeserializeOwned>(
    upstream: &'static str,
    body: &[u8],
) -> Result<T, UpstreamError> {
    serde_json::from_slice(body)
        .map_err(|e| UpstreamError::new(upstream, Failure::InvalidResponse, e.to_string()))
}

/// Reads a body up to [`MAX_BODY_BYTES`].
async fn read_body(
    upstream: &'static str,
    mut response: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(UpstreamError::new(
            upstream,
            Failure::InvalidResponse,
            "body too large",
        ));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_failure(upstream, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(UpstreamError::new(
                upstream,
                Failure::InvalidResponse,
                "body too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A REST/JSON upstream: a base URL, the shared pool and the policy.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: HttpClient,
    base: Url,
    upstream: Arc<Upstream>,
}

impl RestClient {
    /// A client for the service at `base` (`http://127.0.0.1:7001`).
    pub fn new(http: HttpClient, base: Url, upstream: Arc<Upstream>) -> Self {
        RestClient {
            http,
            base,
            upstream,
        }
    }

    /// The policy of this upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// `GET base/segment/segment?query`, decoded from JSON. Path segments are
    /// percent-encoded here, so an id can never change the path.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        ctx: &CallContext,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, UpstreamError> {
        let name = self.upstream.name();
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                UpstreamError::new(name, Failure::Unavailable, "base URL cannot have a path")
            })?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self
            .http
            .reqwest()
            .get(url)
            .headers(ctx.headers())
            .header(http::header::ACCEPT, "application/json");
        self.upstream
            .call(operation, async move {
                let body = send(name, request).await?;
                decode(name, &body)
            })
            .await
    }
}
