//! HTTP transport (REST and GraphQL) over the process's one reqwest pool.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use tower::Service;

use super::{DEADLINE_HEADER, MAX_BODY_BYTES, decode};
use crate::call::{Target, UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};
use crate::layers::{CallFuture, fail};

/// Idle connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 32;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

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
            // Idle connections are kept for the next burst, but not beyond
            // what a host's calls use at once (each costs its buffers: about
            // 30 KiB), and not so long that servers' own keep-alive timeouts
            // (nginx 75 s, Node 5 s) close them under a request first: 4 s, as
            // undici does.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
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

/// The HTTP classifier: which statuses are which failure.
pub fn classify_status(status: StatusCode) -> Option<Failure> {
    if status.is_success() {
        return None;
    }
    Some(match status {
        StatusCode::NOT_FOUND => Failure::NotFound,
        StatusCode::TOO_MANY_REQUESTS => Failure::RateLimited,
        StatusCode::GATEWAY_TIMEOUT => Failure::Timeout,
        s => Failure::Status(s.as_u16()),
    })
}

fn transport_failure(upstream: &'static str, error: &reqwest::Error) -> UpstreamError {
    let failure = if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Unavailable
    };
    // The chain names the cause (refused, reset, truncated body).
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    UpstreamError::new(upstream, failure, detail)
}

/// The transport of a REST or GraphQL upstream.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    upstream: &'static str,
    client: HttpClient,
}

impl HttpTransport {
    /// Sends the calls of `upstream` through `client`.
    pub fn new(upstream: &'static str, client: HttpClient) -> Self {
        HttpTransport { upstream, client }
    }
}

impl Service<UpstreamRequest> for HttpTransport {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> CallFuture {
        let upstream = self.upstream;
        let Target::Url(url) = request.target else {
            return fail(UpstreamError::new(
                upstream,
                Failure::Unavailable,
                "a gRPC method sent to an HTTP upstream",
            ));
        };
        let mut builder = self
            .client
            .inner
            .request(request.method, url)
            .headers(request.headers);
        if let Some(left) = request.info.remaining() {
            builder = builder.header(DEADLINE_HEADER, HeaderValue::from(left.as_millis() as u64));
        }
        if !request.body.is_empty() {
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(request.body);
        }
        let decoder = request.info.decode;
        Box::pin(async move {
            let exchange = async {
                let response = builder
                    .send()
                    .await
                    .map_err(|e| transport_failure(upstream, &e))?;
                let status = response.status();
                if let Some(failure) = classify_status(status) {
                    return Err(UpstreamError::new(
                        upstream,
                        failure,
                        format!("status {status}"),
                    ));
                }
                let body = read_body(upstream, response).await?;
                let decoded = decode(upstream, decoder, &body)?;
                Ok(UpstreamResponse { status, decoded })
            };
            exchange.await
        })
    }
}

/// Reads a body up to [`MAX_BODY_BYTES`].
async fn read_body(
    upstream: &'static str,
    mut response: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::new(upstream, Failure::InvalidResponse, "body too large");
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }
    let mut body =
        BytesMut::with_capacity(response.content_length().map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_failure(upstream, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
