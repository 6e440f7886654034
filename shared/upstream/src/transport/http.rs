//! HTTP transport (REST and GraphQL) over the process's one connection pool.
//!
//! Calls go through hyper's pooled client directly: reqwest parses each
//! call's URL twice more and merges its default headers on every request,
//! which the profile of the mobile dashboard showed as a tenth of the BFF's
//! own work. HTTPS upstreams (and streamed bodies) keep reqwest, for its
//! platform-verified TLS and HTTP/2 negotiation.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use super::{DEADLINE_HEADER, MAX_BODY_BYTES, decode};
use crate::call::{Target, UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};
use crate::layers::{CallFuture, fail};

/// Idle connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 32;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// The content type of a request body.
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// [`DEADLINE_HEADER`] as a name, built once (a `&str` name outside HTTP's
/// standard ones is copied into a new allocation on every insert).
const DEADLINE: HeaderName = HeaderName::from_static(DEADLINE_HEADER);
/// What the BFF calls itself to its upstreams.
const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("bff-gateway/", env!("CARGO_PKG_VERSION")));

type Pool = Client<HttpConnector, Full<Bytes>>;

/// The one pooled HTTP client of a BFF process, shared by every REST and
/// GraphQL upstream: connections are reused across requests and upstreams.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Plain-HTTP upstreams (services inside the cluster): hyper's pool.
    plain: Pool,
    /// HTTPS upstreams (verified with the platform's roots, HTTP/2 when the
    /// server offers it) and long-lived streams that read a body as it comes.
    inner: reqwest::Client,
}

impl HttpClient {
    /// Builds the pools. Call once per process.
    pub fn new(connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        // Idle connections are kept for the next burst, but not beyond what
        // a host's calls use at once (each costs its buffers: about 30 KiB),
        // and not so long that servers' own keep-alive timeouts (nginx 75 s,
        // Node 5 s) close them under a request first: 4 s, as undici does.
        let inner = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let plain = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(HttpClient { plain, inner })
    }

    /// The reqwest client (HTTPS upstreams, streamed bodies), with the same
    /// timeouts and pool sizes.
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

/// A failure to reach the upstream or to read its answer. `timed_out`
/// says whether the client gave up waiting (connecting); the chain of
/// causes names what happened (refused, reset, truncated body).
fn transport_failure(
    upstream: &'static str,
    error: &(dyn std::error::Error + 'static),
    timed_out: bool,
) -> UpstreamError {
    let failure = if timed_out {
        Failure::Timeout
    } else {
        Failure::Unavailable
    };
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    UpstreamError::new(upstream, failure, detail)
}

/// Whether any cause in `error`'s chain is an I/O timeout (hyper's
/// connector reports its connect timeout so).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
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
        let deadline = request
            .info
            .remaining()
            .map(|left| HeaderValue::from(left.as_millis() as u64));
        let decoder = request.info.decode;
        if url.scheme() != "http" {
            return self.call_reqwest(
                request.method,
                url,
                request.headers,
                request.body,
                deadline,
                decoder,
            );
        }
        let uri = match Uri::try_from(url.as_str()) {
            Ok(uri) => uri,
            Err(e) => {
                return fail(UpstreamError::new(
                    upstream,
                    Failure::Unavailable,
                    format!("{url}: {e}"),
                ));
            }
        };
        let has_body = !request.body.is_empty();
        let mut call = http::Request::new(Full::new(request.body));
        *call.method_mut() = request.method;
        *call.uri_mut() = uri;
        *call.headers_mut() = request.headers;
        let headers = call.headers_mut();
        headers.insert(http::header::USER_AGENT, USER_AGENT);
        if let Some(left) = deadline {
            headers.insert(DEADLINE, left);
        }
        if has_body {
            headers.insert(http::header::CONTENT_TYPE, JSON);
        }
        let sent = self.client.plain.request(call);
        Box::pin(async move {
            let response = sent
                .await
                .map_err(|e| transport_failure(upstream, &e, timed_out(&e)))?;
            let status = response.status();
            successful(upstream, status)?;
            let body = read_incoming(upstream, response).await?;
            let decoded = decode(upstream, decoder, &body)?;
            Ok(UpstreamResponse { status, decoded })
        })
    }
}

impl HttpTransport {
    /// An HTTPS call, through reqwest.
    fn call_reqwest(
        &self,
        method: http::Method,
        url: reqwest::Url,
        headers: http::HeaderMap,
        body: Bytes,
        deadline: Option<HeaderValue>,
        decoder: crate::call::Decoder,
    ) -> CallFuture {
        let upstream = self.upstream;
        let mut builder = self.client.inner.request(method, url).headers(headers);
        if let Some(left) = deadline {
            builder = builder.header(DEADLINE, left);
        }
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, JSON).body(body);
        }
        Box::pin(async move {
            let response = builder
                .send()
                .await
                .map_err(|e| transport_failure(upstream, &e, e.is_timeout()))?;
            let status = response.status();
            successful(upstream, status)?;
            let body = read_body(upstream, response).await?;
            let decoded = decode(upstream, decoder, &body)?;
            Ok(UpstreamResponse { status, decoded })
        })
    }
}

/// A status the classifier counts as a failure fails the call before its
/// body is read.
fn successful(upstream: &'static str, status: StatusCode) -> Result<(), UpstreamError> {
    match classify_status(status) {
        Some(failure) => Err(UpstreamError::new(
            upstream,
            failure,
            format!("status {status}"),
        )),
        None => Ok(()),
    }
}

fn too_large(upstream: &'static str) -> UpstreamError {
    UpstreamError::new(upstream, Failure::InvalidResponse, "body too large")
}

/// Reads a hyper body up to [`MAX_BODY_BYTES`]; one that arrives in one
/// piece is not copied.
async fn read_incoming(
    upstream: &'static str,
    response: http::Response<hyper::body::Incoming>,
) -> Result<Bytes, UpstreamError> {
    let length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large(upstream));
    }
    match Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large(upstream)),
        Err(e) => Err(transport_failure(upstream, &*e, timed_out(&*e))),
    }
}

/// Reads a reqwest body up to [`MAX_BODY_BYTES`].
async fn read_body(
    upstream: &'static str,
    mut response: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    let too_large = || too_large(upstream);
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
        .map_err(|e| transport_failure(upstream, &e, e.is_timeout()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
