//! Upstreams belong to the BFF that uses them.
//!
//! A BFF declares each upstream it calls once ([`UpstreamDecl`]: name,
//! protocol, default URL); configuration resolves the URL and policy of each
//! declared name; the [`Registry`] builds every stack once at start-up and
//! hands out typed clients by name. The edge never names a domain service:
//! adding an upstream is one declaration in the BFF.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;

use crate::call::Protocol;
use crate::client::{GraphQlClient, GrpcClient, RestClient};
use crate::stack::{Upstream, UpstreamPolicy};
use crate::transport::grpc::{GrpcTransport, channel};
use crate::transport::http::{HttpClient, HttpTransport};

/// An upstream a BFF uses, as declared in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamDecl {
    /// The name in configuration keys (`BFF_UPSTREAM_<NAME>`), metrics and
    /// `/readyz`.
    pub name: &'static str,
    /// How it is spoken to.
    pub protocol: Protocol,
    /// Base URL (REST), endpoint (GraphQL) or channel URL (gRPC) when
    /// configuration does not say.
    pub default_url: &'static str,
}

/// A declared upstream with its configured URL and policy.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The declaration.
    pub decl: UpstreamDecl,
    /// Where it is.
    pub url: Url,
    /// How it is called.
    pub policy: UpstreamPolicy,
}

/// Why an upstream cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP pool could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A gRPC endpoint is unusable.
    #[error("invalid gRPC endpoint for {upstream}: {source}")]
    Grpc {
        /// Which upstream.
        upstream: &'static str,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Code asked for an upstream its BFF did not declare.
    #[error("upstream {0} is not declared by this BFF")]
    Undeclared(&'static str),
    /// Code asked for an upstream in another protocol than declared.
    #[error("upstream {upstream} is declared as {declared}, not {asked}")]
    Protocol {
        /// Which upstream.
        upstream: &'static str,
        /// Its declared protocol.
        declared: &'static str,
        /// What was asked for.
        asked: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    upstream: Upstream,
    url: Url,
    /// The channel of a gRPC upstream (its streaming calls use it directly).
    channel: Option<tonic::transport::Channel>,
}

/// Every upstream of one BFF process, built once.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: BTreeMap<&'static str, Entry>,
    http: HttpClient,
}

impl Registry {
    /// Builds the stack of every upstream in `settings`. Must run inside a
    /// Tokio runtime (gRPC channels connect lazily in the background).
    pub fn build(
        settings: &[UpstreamSettings],
        connect_timeout: Duration,
    ) -> Result<Self, RegistryError> {
        let http = HttpClient::new(connect_timeout)?;
        let mut entries = BTreeMap::new();
        for s in settings {
            let name = s.decl.name;
            let (upstream, grpc_channel) = match s.decl.protocol {
                Protocol::Rest | Protocol::GraphQl => (
                    Upstream::new(
                        name,
                        s.decl.protocol,
                        s.policy,
                        HttpTransport::new(name, http.clone()),
                    ),
                    None,
                ),
                Protocol::Grpc => {
                    let channel = channel(s.url.as_str(), connect_timeout).map_err(|source| {
                        RegistryError::Grpc {
                            upstream: name,
                            source,
                        }
                    })?;
                    (
                        Upstream::new(
                            name,
                            Protocol::Grpc,
                            s.policy,
                            GrpcTransport::new(name, channel.clone()),
                        ),
                        Some(channel),
                    )
                }
            };
            entries.insert(
                name,
                Entry {
                    upstream,
                    url: s.url.clone(),
                    channel: grpc_channel,
                },
            );
        }
        Ok(Registry { entries, http })
    }

    /// The process's one HTTP pool (REST and GraphQL upstreams use it;
    /// so may other HTTP clients of the process, such as the JWKS fetch).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn entry(&self, name: &'static str, asked: Protocol) -> Result<&Entry, RegistryError> {
        let entry = self
            .entries
            .get(name)
            .ok_or(RegistryError::Undeclared(name))?;
        if entry.upstream.protocol() != asked {
            return Err(RegistryError::Protocol {
                upstream: name,
                declared: entry.upstream.protocol().as_str(),
                asked: asked.as_str(),
            });
        }
        Ok(entry)
    }

    /// The REST client of `name`.
    pub fn rest(&self, name: &'static str) -> Result<RestClient, RegistryError> {
        let e = self.entry(name, Protocol::Rest)?;
        Ok(RestClient::new(e.upstream.clone(), e.url.clone()))
    }

    /// The GraphQL client of `name`.
    pub fn graphql(&self, name: &'static str) -> Result<GraphQlClient, RegistryError> {
        let e = self.entry(name, Protocol::GraphQl)?;
        Ok(GraphQlClient::new(e.upstream.clone(), e.url.clone()))
    }

    /// The gRPC client of `name` (unary calls through the stack).
    pub fn grpc(&self, name: &'static str) -> Result<GrpcClient, RegistryError> {
        let e = self.entry(name, Protocol::Grpc)?;
        Ok(GrpcClient::new(e.upstream.clone()))
    }

    /// The channel of gRPC upstream `name`, for server-streaming calls,
    /// which do not fit the stack's one-answer calls: they share its
    /// connection, and their caller owns reconnecting.
    pub fn grpc_channel(
        &self,
        name: &'static str,
    ) -> Result<tonic::transport::Channel, RegistryError> {
        let e = self.entry(name, Protocol::Grpc)?;
        e.channel.clone().ok_or(RegistryError::Undeclared(name))
    }

    /// Every upstream, by name.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.entries.values().map(|e| &e.upstream)
    }
}
