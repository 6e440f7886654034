//! One call as the upstream stack sees it, whatever the protocol.
//!
//! Every layer of the stack works on [`UpstreamRequest`] and
//! [`UpstreamResponse`]: a buffered body (`Bytes`, cheap to clone for a
//! retry or a coalesced waiter) plus [`CallInfo`], what the policies need to
//! know (operation, idempotency, who the data belongs to, the deadline). The
//! transports at the bottom translate to hyper's client (REST, GraphQL;
//! reqwest for HTTPS) or to a tonic channel (gRPC), and decode the answer
//! *inside* the stack, so that a
//! malformed or oversized body is a failure the breaker and the metrics see,
//! and a coalesced answer is decoded once for all its waiters.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;

use crate::budget::Criticality;
use crate::error::{Failure, UpstreamError};

/// A decoded answer, shared by every waiter of a coalesced call.
pub type Decoded = Arc<dyn Any + Send + Sync>;

/// Decodes a successful answer's body (a JSON document, a GraphQL envelope,
/// a protobuf message). Monomorphised per target type and passed as a plain
/// function pointer, so a call carries no allocation for it.
pub type Decoder = fn(&Bytes) -> Result<Decoded, (Failure, String)>;

/// What the policies of the stack need to know about a call.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The operation, for metrics and spans (`get_user`, `GetProduct`).
    pub operation: &'static str,
    /// Whether the call may be sent again (reads): retries, hedging and
    /// coalescing apply only to idempotent calls.
    pub idempotent: bool,
    /// The subject whose data this is, for per-user reads: part of the
    /// coalescing key, so one user's answer never reaches another.
    pub subject: Option<Arc<str>>,
    /// Decodes a successful answer.
    pub decode: Decoder,
    /// Set by the deadline layer: when the call must be answered.
    pub deadline: Option<Instant>,
    /// Set by the deadline layer from the section's budget.
    pub criticality: Criticality,
    /// Which attempt this is (0 for the first), set by the retry layer.
    pub attempt: u32,
}

impl CallInfo {
    /// A call to `operation` whose answer `decode` reads; not idempotent
    /// until said so.
    pub fn new(operation: &'static str, decode: Decoder) -> Self {
        CallInfo {
            operation,
            idempotent: false,
            subject: None,
            decode,
            deadline: None,
            criticality: Criticality::Critical,
            attempt: 0,
        }
    }

    /// Marks the call idempotent (a read).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// The subject whose data this is.
    pub fn for_subject(mut self, subject: Option<Arc<str>>) -> Self {
        self.subject = subject;
        self
    }

    /// Time left before the deadline (`None` without one).
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A full URL (REST, GraphQL).
    Url(reqwest::Url),
    /// A gRPC method path on the upstream's channel (`/pkg.Service/Method`).
    GrpcMethod(&'static str),
}

/// A request travelling down the stack.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// HTTP method (`POST` for gRPC and GraphQL).
    pub method: Method,
    /// Where it goes.
    pub target: Target,
    /// Headers to send (request id, trace context, accept).
    pub headers: HeaderMap,
    /// The body (for gRPC: the encoded message, framed by the transport).
    pub body: Bytes,
    /// What the policies need.
    pub info: CallInfo,
}

/// A successful answer travelling up the stack.
#[derive(Clone)]
pub struct UpstreamResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// What the call's decoder made of the body (the raw bytes are not
    /// kept: coalesced waiters would hold them for nothing).
    pub decoded: Decoded,
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// [`decode_json`] for documents that must be small: a body over `MAX`
/// bytes is refused before it is parsed (a signing-key set, say, which no
/// provider makes larger than a few kilobytes).
pub fn decode_json_within<T, const MAX: usize>(body: &Bytes) -> Result<Decoded, (Failure, String)>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    if body.len() > MAX {
        return Err((
            Failure::InvalidResponse,
            format!("a {}-byte document, over the {MAX} accepted", body.len()),
        ));
    }
    decode_json::<T>(body)
}

/// The JSON decoder for `T`.
pub fn decode_json<T>(body: &Bytes) -> Result<Decoded, (Failure, String)>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    serde_json::from_slice::<T>(body)
        .map(|v| Arc::new(v) as Decoded)
        .map_err(|e| (Failure::InvalidResponse, e.to_string()))
}

/// The protobuf decoder for `M`.
pub fn decode_prost<M>(body: &Bytes) -> Result<Decoded, (Failure, String)>
where
    M: prost::Message + Default + Send + Sync + 'static,
{
    M::decode(body.clone())
        .map(|v| Arc::new(v) as Decoded)
        .map_err(|e| (Failure::InvalidResponse, e.to_string()))
}

/// A request to nowhere in particular, for the layers' unit tests.
#[cfg(test)]
pub(crate) fn test_request() -> UpstreamRequest {
    UpstreamRequest {
        method: Method::GET,
        target: Target::GrpcMethod("/t"),
        headers: HeaderMap::new(),
        body: Bytes::new(),
        info: CallInfo::new("op", decode_json::<()>),
    }
}

/// The wire protocol of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// REST/JSON over HTTP.
    Rest,
    /// GraphQL over HTTP (`POST {query, variables}`).
    GraphQl,
    /// gRPC over HTTP/2.
    Grpc,
}

impl Protocol {
    /// `rest`, `graphql` or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::GraphQl => "graphql",
            Protocol::Grpc => "grpc",
        }
    }
}

/// The boxed stack of one upstream (the stage boundary: built once, cloned
/// per call).
pub type UpstreamService = BoxCloneSyncService<UpstreamRequest, UpstreamResponse, UpstreamError>;
