//! gRPC transport: unary calls over a tonic [`Channel`].
//!
//! The stack hands this transport an encoded protobuf message; it adds the
//! gRPC framing, sends it through the channel (one multiplexed HTTP/2
//! connection, re-established on failure), reads the answer to its end —
//! trailers included, so a stream cut before its `grpc-status` is a failure
//! and not a silent success — and maps the gRPC status to a failure kind
//! (the gRPC classifier). Server-streaming calls (watching stock) use the
//! channel directly through tonic's generated clients.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tonic::transport::{Channel, Endpoint};
use tower::{Service, ServiceExt};

use super::{MAX_BODY_BYTES, decode};
use crate::call::{Target, UpstreamRequest, UpstreamResponse};
use crate::error::{Failure, UpstreamError};
use crate::layers::{CallFuture, fail};

/// A lazily connected channel to `url`, built once per process.
pub fn channel(url: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// The gRPC classifier: which status codes are which failure.
pub fn classify_code(code: tonic::Code) -> Option<Failure> {
    use tonic::Code;
    Some(match code {
        Code::Ok => return None,
        Code::NotFound => Failure::NotFound,
        Code::DeadlineExceeded => Failure::Timeout,
        // Connection refused or reset surfaces as Unavailable or Unknown.
        Code::Unavailable | Code::Unknown | Code::Cancelled => Failure::Unavailable,
        Code::ResourceExhausted => Failure::RateLimited,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Failure::Status(400),
        Code::Unauthenticated => Failure::Status(401),
        Code::PermissionDenied => Failure::Status(403),
        Code::AlreadyExists | Code::Aborted => Failure::Status(409),
        _ => Failure::Status(500),
    })
}

/// The `grpc-timeout` value for `left` (milliseconds, at most 8 digits).
pub fn grpc_timeout(left: Duration) -> HeaderValue {
    let millis = left.as_millis().min(99_999_999) as u64;
    HeaderValue::from_str(&format!("{millis}m")).unwrap_or(HeaderValue::from_static("1m"))
}

fn status_of(headers: &HeaderMap) -> Option<(tonic::Code, String)> {
    let code = headers.get("grpc-status")?;
    let code = std::str::from_utf8(code.as_bytes())
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Some((code, message))
}

/// The transport of a gRPC upstream.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    upstream: &'static str,
    channel: Channel,
}

impl GrpcTransport {
    /// Sends the calls of `upstream` through `channel`.
    pub fn new(upstream: &'static str, channel: Channel) -> Self {
        GrpcTransport { upstream, channel }
    }
}

impl Service<UpstreamRequest> for GrpcTransport {
    type Response = UpstreamResponse;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> CallFuture {
        let upstream = self.upstream;
        let Target::GrpcMethod(path) = request.target else {
            return fail(UpstreamError::new(
                upstream,
                Failure::Unavailable,
                "a URL sent to a gRPC upstream",
            ));
        };
        let mut frame = BytesMut::with_capacity(5 + request.body.len());
        frame.put_u8(0);
        frame.put_u32(request.body.len() as u32);
        frame.put_slice(&request.body);
        let mut http_request =
            http::Request::new(tonic::body::Body::new(Full::new(frame.freeze())));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = http::Uri::from_static(path);
        let headers = http_request.headers_mut();
        *headers = request.headers;
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        if let Some(left) = request.info.remaining() {
            headers.insert("grpc-timeout", grpc_timeout(left));
        }
        let decoder = request.info.decode;
        let deadline = request.info.deadline;
        let channel = self.channel.clone();
        Box::pin(async move {
            let exchange = async {
                let unavailable =
                    |detail: String| UpstreamError::new(upstream, Failure::Unavailable, detail);
                let response = channel.oneshot(http_request).await.map_err(|e| {
                    let detail = format!("transport: {e}: {:?}", std::error::Error::source(&e));
                    // The channel enforces grpc-timeout itself.
                    if deadline.is_some_and(|d| {
                        tokio::time::Instant::now() + Duration::from_millis(20) >= d
                    }) {
                        UpstreamError::new(upstream, Failure::Timeout, detail)
                    } else {
                        unavailable(detail)
                    }
                })?;
                let (parts, body) = response.into_parts();
                if parts.status != StatusCode::OK {
                    return Err(UpstreamError::new(
                        upstream,
                        Failure::Status(parts.status.as_u16()),
                        format!("HTTP status {}", parts.status),
                    ));
                }
                let check = |status: Option<(tonic::Code, String)>| match status {
                    // tonic servers cancel a call whose grpc-timeout passed:
                    // at our deadline that is a timeout, not an outage.
                    Some((tonic::Code::Cancelled, message))
                        if deadline.is_some_and(|d| {
                            tokio::time::Instant::now() + Duration::from_millis(20) >= d
                        }) =>
                    {
                        Err(UpstreamError::new(
                            upstream,
                            Failure::Timeout,
                            format!("cancelled at the deadline: {message}"),
                        ))
                    }
                    Some((code, message)) => match classify_code(code) {
                        None => Ok(true),
                        Some(failure) => Err(UpstreamError::new(
                            upstream,
                            failure,
                            format!("{code:?}: {message}"),
                        )),
                    },
                    None => Ok(false),
                };
                // A trailers-only answer carries its status in the headers.
                if check(status_of(&parts.headers))? {
                    return Err(UpstreamError::new(
                        upstream,
                        Failure::InvalidResponse,
                        "OK without a message",
                    ));
                }
                let collected = Limited::new(body, MAX_BODY_BYTES + 5)
                    .collect()
                    .await
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            UpstreamError::new(upstream, Failure::InvalidResponse, "body too large")
                        } else {
                            unavailable(format!("body: {e}"))
                        }
                    })?;
                let trailers = collected.trailers().cloned();
                let ended = match trailers.as_ref() {
                    Some(t) => check(status_of(t))?,
                    None => false,
                };
                if !ended {
                    return Err(UpstreamError::new(
                        upstream,
                        Failure::InvalidResponse,
                        "the answer ended without a grpc-status",
                    ));
                }
                let mut data = collected.to_bytes();
                if data.len() < 5 || data[0] != 0 {
                    return Err(UpstreamError::new(
                        upstream,
                        Failure::InvalidResponse,
                        "not one uncompressed gRPC message",
                    ));
                }
                data.advance(1);
                let len = data.get_u32() as usize;
                if data.len() != len {
                    return Err(UpstreamError::new(
                        upstream,
                        Failure::InvalidResponse,
                        format!("message of {} bytes framed as {len}", data.len()),
                    ));
                }
                let decoded = decode(upstream, decoder, &data)?;
                Ok(UpstreamResponse {
                    status: StatusCode::OK,
                    decoded,
                })
            };
            exchange.await
        })
    }
}
