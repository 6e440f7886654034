//! The demo world the BFFs are built against: a development identity
//! provider, seven domain services over REST, gRPC and GraphQL, and a control
//! API that makes any of them slow, failing, resetting or hanging on demand.
//!
//! Everything runs in one process from [`DemoStack::start`], on the
//! contract's ports ([`DemoConfig::contract_defaults`]) or on free ports for
//! tests ([`DemoConfig::ephemeral`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), demo_services::StartError> {
//! use demo_services::{DemoConfig, DemoStack, ServiceName};
//! let stack = DemoStack::start(DemoConfig::ephemeral()).await?;
//! println!("users at {}", stack.url(ServiceName::User));
//! stack.shutdown().await;
//! # Ok(()) }
//! ```

pub mod control;
pub mod data;
pub mod faults;
pub mod grpc;
pub mod identity;
pub mod pricing;
pub mod problem;
pub mod rest;
pub mod serve;
pub mod states;
pub mod stats;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use bff_proto::catalog::v1::product_service_server::ProductServiceServer;
use bff_proto::inventory::v1::inventory_service_server::InventoryServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use data::DemoData;
pub use faults::{Fault, FaultRegistry, ServiceName};
pub use identity::Identity;

/// The contract's port of the control API.
pub const CONTROL_PORT: u16 = 7099;

/// How to run the demo world.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The address every service binds to.
    pub host: IpAddr,
    /// Port per service; 0 picks a free one.
    pub ports: BTreeMap<ServiceName, u16>,
    /// Port of the control API; 0 picks a free one.
    pub control_port: u16,
    /// Seed of the demo data.
    pub seed: u64,
    /// Where price changes are also published; `None`: in-process only.
    pub redis_url: Option<String>,
    /// The `iss` of tokens; `None`: `http://` plus the identity address.
    pub issuer: Option<String>,
    /// Lifetime of access tokens (at most 15 minutes).
    pub access_token_ttl: Duration,
    /// When set, a random product's stock changes this often.
    pub stock_simulation: Option<Duration>,
    /// How long a rotated signing key is published before it signs (so
    /// verifiers know it first; the BFFs refetch at most every 10 s).
    pub key_publish_ahead: Duration,
}

impl DemoConfig {
    /// The contract's ports on 127.0.0.1, with a stock change every two
    /// seconds so live updates have something to show.
    pub fn contract_defaults() -> Self {
        DemoConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: ServiceName::ALL
                .into_iter()
                .map(|s| (s, s.default_port()))
                .collect(),
            control_port: CONTROL_PORT,
            seed: data::DEFAULT_SEED,
            redis_url: None,
            issuer: None,
            access_token_ttl: identity::MAX_ACCESS_TTL,
            stock_simulation: Some(Duration::from_secs(2)),
            key_publish_ahead: Duration::from_secs(10),
        }
    }

    /// Free ports on 127.0.0.1, no background stock changes, and rotated
    /// keys that sign at once: what tests want.
    pub fn ephemeral() -> Self {
        DemoConfig {
            ports: ServiceName::ALL.into_iter().map(|s| (s, 0)).collect(),
            control_port: 0,
            stock_simulation: None,
            key_publish_ahead: Duration::ZERO,
            ..DemoConfig::contract_defaults()
        }
    }
}

/// Why the demo world did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port could not be bound (typically: already in use).
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// Which service.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Redis URL is not valid.
    #[error("invalid REDIS_URL: {0}")]
    Redis(#[source] redis::RedisError),
    /// Signing keys could not be generated.
    #[error(transparent)]
    Keys(#[from] identity::KeyError),
    /// A start-up task failed.
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The running demo world. Dropping it stops every service.
#[derive(Debug)]
pub struct DemoStack {
    addrs: BTreeMap<ServiceName, SocketAddr>,
    control: SocketAddr,
    data: Arc<DemoData>,
    identity: Arc<Identity>,
    faults: Arc<FaultRegistry>,
    stats: Arc<stats::Stats>,
    prices: Arc<pricing::PriceBook>,
    stock: Arc<grpc::StockBook>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

async fn bind(what: &str, host: IpAddr, port: u16) -> Result<TcpListener, StartError> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what: what.to_owned(),
            addr,
            source,
        })
}

fn local_addr(listener: &TcpListener, what: &str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        what: what.to_owned(),
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        source,
    })
}

impl DemoStack {
    /// Binds every port first (so a taken port fails before anything
    /// serves), then generates the data and keys and starts serving.
    pub async fn start(config: DemoConfig) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        for service in ServiceName::ALL {
            let port = config
                .ports
                .get(&service)
                .copied()
                .unwrap_or_else(|| service.default_port());
            listeners.push((
                service,
                bind(&format!("{service} service"), config.host, port).await?,
            ));
        }
        let control_listener = bind("control API", config.host, config.control_port).await?;
        let mut addrs = BTreeMap::new();
        for (service, listener) in &listeners {
            addrs.insert(*service, local_addr(listener, service.as_str())?);
        }
        let control = local_addr(&control_listener, "control API")?;

        let redis = config
            .redis_url
            .as_deref()
            .map(redis::Client::open)
            .transpose()
            .map_err(StartError::Redis)?;
        let identity_addr = addrs[&ServiceName::Identity];
        let issuer = config.issuer.clone().unwrap_or_else(|| {
            let host = if identity_addr.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                identity_addr.ip()
            };
            format!("http://{}", SocketAddr::new(host, identity_addr.port()))
        });
        let (seed, ttl, publish_ahead) = (
            config.seed,
            config.access_token_ttl,
            config.key_publish_ahead,
        );
        let sessions = redis.clone();
        // Data generation and RSA key generation are CPU-bound.
        let (data, identity) = tokio::task::spawn_blocking(move || -> Result<_, StartError> {
            let data = Arc::new(DemoData::generate(seed));
            let identity = Arc::new(Identity::new(
                issuer,
                data.clone(),
                ttl,
                publish_ahead,
                sessions,
            )?);
            Ok((data, identity))
        })
        .await??;

        let faults = Arc::new(FaultRegistry::default());
        let stats = Arc::new(stats::Stats::default());
        let prices = Arc::new(pricing::PriceBook::new(&data, redis));
        let stock = Arc::new(grpc::StockBook::new(&data));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        for (service, listener) in listeners {
            let router = match service {
                ServiceName::Identity => identity::router(identity.clone()),
                ServiceName::User => rest::user_router(data.clone()),
                ServiceName::Order => rest::order_router(data.clone()),
                ServiceName::Recommendation => rest::recommendation_router(data.clone()),
                ServiceName::Review => rest::review_router(data.clone()),
                ServiceName::Pricing => pricing::router(prices.clone()),
                ServiceName::Product => tonic::service::Routes::new(ProductServiceServer::new(
                    grpc::ProductService::new(data.clone()),
                ))
                .into_axum_router(),
                ServiceName::Inventory => tonic::service::Routes::new(InventoryServiceServer::new(
                    grpc::InventoryService::new(stock.clone()),
                ))
                .into_axum_router(),
            };
            let state = faults::FaultState {
                service,
                faults: faults.clone(),
                stats: stats.clone(),
            };
            let router = router
                .route("/healthz", get(|| async { "ok" }))
                .fallback(not_found)
                .layer(axum::middleware::from_fn_with_state(state, faults::inject));
            tasks.spawn(serve::serve(listener, router, shutdown.clone()));
        }
        let control_router = control::router(control::ControlState {
            faults: faults.clone(),
            prices: prices.clone(),
            stock: stock.clone(),
            identity: identity.clone(),
            stats: stats.clone(),
            data: data.clone(),
        })
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found);
        tasks.spawn(serve::serve(
            control_listener,
            control_router,
            shutdown.clone(),
        ));

        if let Some(every) = config.stock_simulation {
            let simulation = stock.clone().simulate(every);
            let token = shutdown.clone();
            tasks.spawn(async move {
                token.cancelled().await;
                simulation.abort();
            });
        }
        tracing::info!(seed, "demo services started");
        Ok(DemoStack {
            addrs,
            control,
            data,
            identity,
            faults,
            stats,
            prices,
            stock,
            shutdown,
            tasks,
        })
    }

    /// The address `service` listens on.
    pub fn addr(&self, service: ServiceName) -> SocketAddr {
        self.addrs[&service]
    }

    /// The base URL of `service` (for pricing, the GraphQL endpoint).
    pub fn url(&self, service: ServiceName) -> String {
        let base = format!("http://{}", self.addr(service));
        if service == ServiceName::Pricing {
            format!("{base}/graphql")
        } else {
            base
        }
    }

    /// The address of the control API.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// The base URL of the control API.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// The demo data being served.
    pub fn data(&self) -> &Arc<DemoData> {
        &self.data
    }

    /// The identity provider (to issue tokens without HTTP).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The fault registry (the control API writes the same one).
    pub fn faults(&self) -> &Arc<FaultRegistry> {
        &self.faults
    }

    /// Request counters per service and operation.
    pub fn stats(&self) -> &Arc<stats::Stats> {
        &self.stats
    }

    /// The live price book.
    pub fn prices(&self) -> &Arc<pricing::PriceBook> {
        &self.prices
    }

    /// The live stock book.
    pub fn stock(&self) -> &Arc<grpc::StockBook> {
        &self.stock
    }

    /// Stops accepting, lets open requests finish (up to five seconds), and
    /// returns when every service has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for DemoStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn not_found(uri: http::Uri) -> problem::Problem {
    problem::Problem::new(
        http::StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}
