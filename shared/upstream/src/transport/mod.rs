//! The bottom of the stack: one transport per wire protocol. Each sends a
//! call, maps what comes back to a success or a typed [`Failure`] (the
//! protocol's *classifier*: HTTP statuses, gRPC status codes, GraphQL
//! `errors`), and decodes a successful body with the call's decoder.
//!
//! Both tell the upstream how long it has: gRPC in `grpc-timeout`, HTTP in
//! [`DEADLINE_HEADER`] (milliseconds), computed when the attempt is sent.

pub mod grpc;
pub mod http;

use crate::error::{Failure, UpstreamError};

/// The header that carries the remaining budget of a REST/GraphQL call, in
/// milliseconds.
pub const DEADLINE_HEADER: &str = "x-request-deadline-ms";

/// The largest upstream body read, so a misbehaving service cannot make the
/// BFF buffer without bound.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn decode(
    upstream: &'static str,
    decode: crate::call::Decoder,
    body: &bytes::Bytes,
) -> Result<crate::call::Decoded, UpstreamError> {
    decode(body).map_err(|(failure, detail): (Failure, String)| {
        UpstreamError::new(upstream, failure, detail)
    })
}
