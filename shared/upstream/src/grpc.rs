//! gRPC calls over tonic channels: the channel, the metadata that carries the
//! request id and trace context, and the mapping of gRPC codes to failures.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::context::CallContext;
use crate::error::{Failure, UpstreamError};

/// A lazily connected channel to `url`: one multiplexed HTTP/2 connection,
/// re-established on failure, built once per process.
pub fn channel(url: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A request carrying `message`, the propagation metadata of `ctx`, and a
/// `grpc-timeout` so the server can give up when we do.
pub fn request<T>(message: T, ctx: &CallContext, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    let metadata = request.metadata_mut();
    for (name, value) in ctx.headers().iter() {
        if let (Ok(key), Ok(value)) = (
            AsciiMetadataKey::from_bytes(name.as_str().as_bytes()),
            AsciiMetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.insert(key, value);
        }
    }
    request
}

/// Maps a gRPC status to a failure of `upstream`.
pub fn failure(upstream: &'static str, status: &tonic::Status) -> UpstreamError {
    use tonic::Code;
    let failure = match status.code() {
        Code::NotFound => Failure::NotFound,
        Code::DeadlineExceeded => Failure::Timeout,
        // Connection refused or reset surfaces as Unavailable or Unknown.
        Code::Unavailable | Code::Unknown | Code::Cancelled => Failure::Unavailable,
        Code::ResourceExhausted => Failure::RateLimited,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Failure::Status(400),
        Code::Unauthenticated => Failure::Status(401),
        Code::PermissionDenied => Failure::Status(403),
        _ => Failure::Status(500),
    };
    UpstreamError::new(
        upstream,
        failure,
        format!("{:?}: {}", status.code(), status.message()),
    )
}
