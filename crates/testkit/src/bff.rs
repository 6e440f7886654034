//! Running a BFF app in-process against the demo services.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bff_edge::{BffConfig, BffSpec, Shared, StartError};
use demo_services::{DemoStack, ServiceName};
use jsonwebtoken::Algorithm;

/// The configuration of a BFF pointed at `stack`, loaded through the same
/// path as the binary's (environment-style keys), on a free port.
///
/// # Panics
/// When the configuration is invalid.
pub fn bff_config(stack: &DemoStack, spec: BffSpec) -> BffConfig {
    bff_config_with::<&str, &str>(stack, spec, &[])
}

/// [`bff_config`] with extra `KEY=value` settings (e.g. short breaker
/// windows for a test).
///
/// # Panics
/// When the configuration is invalid.
pub fn bff_config_with<K: AsRef<str>, V: AsRef<str>>(
    stack: &DemoStack,
    spec: BffSpec,
    extra: &[(K, V)],
) -> BffConfig {
    let identity = stack.url(ServiceName::Identity);
    let mut env: Vec<(String, String)> = vec![
        ("BFF_LISTEN".into(), "127.0.0.1:0".into()),
        (
            "BFF_JWKS_URL".into(),
            format!("{identity}/.well-known/jwks.json"),
        ),
        ("BFF_ISSUER".into(), identity),
        ("BFF_LOG_FORMAT".into(), "pretty".into()),
        // Tests make thousands of requests with one token: quotas high
        // enough never to be reached unless a test sets its own.
        ("BFF_RATE_LIMIT_FREE".into(), "1000000/1s".into()),
        ("BFF_RATE_LIMIT_STANDARD".into(), "1000000/1s".into()),
        ("BFF_RATE_LIMIT_PREMIUM".into(), "1000000/1s".into()),
        ("BFF_RATE_LIMIT_ANONYMOUS".into(), "1000000/1s".into()),
    ];
    for service in [
        ServiceName::User,
        ServiceName::Order,
        ServiceName::Recommendation,
        ServiceName::Review,
        ServiceName::Product,
        ServiceName::Inventory,
        ServiceName::Pricing,
    ] {
        env.push((
            format!("BFF_UPSTREAM_{}", service.as_str().to_uppercase()),
            stack.url(service),
        ));
    }
    env.extend(
        extra
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
    );
    match BffConfig::load(spec, None, env) {
        Ok(config) => config,
        Err(error) => panic!("test configuration is invalid: {error}"),
    }
}

/// Settings that keep every fragment kind `spec` declares only as a
/// stand-in for failures: never served fresh nor while revalidating, so
/// every request reaches the upstreams. For tests of the failure paths
/// (stale copies, circuits, retries), which the BFFs' caching defaults
/// would otherwise answer from the cache.
pub fn stand_in_only(spec: BffSpec) -> Vec<(String, String)> {
    spec.fragments
        .iter()
        .flat_map(|policy| {
            let kind = policy.kind.to_uppercase();
            [
                (format!("BFF_CACHE_{kind}_FRESH"), "0s".to_owned()),
                (format!("BFF_CACHE_{kind}_REVALIDATE"), "0s".to_owned()),
            ]
        })
        .collect()
}

/// A BFF app served on a free port, stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The body of an unauthenticated `GET path` (`/metrics`, …).
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn get_text(&self, path: &str) -> String {
        let response = reqwest::get(self.url(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The JSON body of an unauthenticated `GET path` (`/readyz`, …).
    ///
    /// # Panics
    /// When the server does not answer JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let text = self.get_text(path).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds a BFF's app over `config` with its `app` function (e.g.
/// `bff_web::app`) and serves it ([`serve_bff`]).
///
/// # Panics
/// When the shared pieces or the app cannot be built, or the app is not
/// ready in time.
pub async fn start_bff<F, Fut>(config: BffConfig, app: F) -> TestServer
where
    F: FnOnce(Shared) -> Fut,
    Fut: std::future::Future<Output = Result<Router, StartError>>,
{
    // A free port, with the configured socket options.
    let mut config = config;
    config.listen = "127.0.0.1:0".parse().expect("an address");
    let listener = match bff_edge::server::bind(&config).await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let shared = match Shared::new(config) {
        Ok(shared) => shared,
        Err(e) => panic!("shared pieces: {e}"),
    };
    match app(shared).await {
        Ok(app) => serve_on(listener, app).await,
        Err(e) => panic!("app: {e}"),
    }
}

/// [`start_bff`] of `spec`'s app against `stack`, every fragment kept only
/// to stand in for failures ([`stand_in_only`]): for the tests of the
/// failure paths.
///
/// # Panics
/// As [`start_bff`].
pub async fn start_stand_in_only<F, Fut>(stack: &DemoStack, spec: BffSpec, app: F) -> TestServer
where
    F: FnOnce(Shared) -> Fut,
    Fut: std::future::Future<Output = Result<Router, StartError>>,
{
    start_bff(bff_config_with(stack, spec, &stand_in_only(spec)), app).await
}

/// Serves `routes` as the authenticated API of a bare BFF (`bff-mobile`,
/// no upstreams) with every edge layer, for tests of the edge itself; with
/// a user token it accepts.
///
/// # Panics
/// When the BFF cannot be built.
pub async fn serve_edge(stack: &DemoStack, routes: Router) -> (TestServer, String) {
    serve_edge_with(stack, routes, |_| {}).await
}

/// The spec of an edge without upstreams or fragments, under bff-mobile's
/// name (its tokens' audience), for tests of the edge itself.
pub const EDGE_SPEC: BffSpec = BffSpec {
    version: "0.0.1",
    name: "bff-mobile",
    default_port: 8081,
    upstreams: &[],
    fragments: &[],
    flags: &[],
};

/// [`serve_edge`] with the configuration changed by `configure` first.
///
/// # Panics
/// When the BFF cannot be built.
pub async fn serve_edge_with(
    stack: &DemoStack,
    routes: Router,
    configure: impl FnOnce(&mut BffConfig),
) -> (TestServer, String) {
    serve_edge_composed(stack, configure, |edge| edge.authenticated(routes)).await
}

/// [`serve_edge_with`], the app composed by `compose` (several groups of
/// routes, admission classes, layers).
///
/// # Panics
/// When the configuration is refused, or as [`serve_bff`].
pub async fn serve_edge_composed(
    stack: &DemoStack,
    configure: impl FnOnce(&mut BffConfig),
    compose: impl FnOnce(bff_edge::EdgeBuilder) -> bff_edge::EdgeBuilder,
) -> (TestServer, String) {
    let mut config = bff_config(stack, EDGE_SPEC);
    configure(&mut config);
    let shared = match Shared::new(config) {
        Ok(shared) => shared,
        Err(e) => panic!("shared: {e}"),
    };
    let app = compose(bff_edge::EdgeBuilder::new(shared)).build();
    let token = user_token(stack, "user0001", "bff-mobile", None);
    (serve_bff(app).await, token)
}

/// Serves `app` on a free port and waits until `/readyz` says ready (the
/// signing keys are loaded).
///
/// # Panics
/// When no port is free or the app is not ready within 10 seconds.
pub async fn serve_bff(app: Router) -> TestServer {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("no free port: {e}"),
    };
    serve_on(listener, app).await
}

async fn serve_on(listener: tokio::net::TcpListener, app: Router) -> TestServer {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("no address: {e}"),
    };
    // The binaries' own serving path (connection counting, peer address).
    let task = tokio::spawn(async move {
        let _ = bff_edge::server::serve(
            listener,
            app,
            std::future::pending::<()>(),
            Duration::from_secs(1),
        )
        .await;
    });
    let server = TestServer { addr, task };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(server.url("/readyz")).send().await
            && r.status() == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the BFF at {addr} did not become ready");
}

/// The demo services `spec`'s BFF calls (what its binary must be pointed at).
///
/// # Panics
/// When the spec declares an upstream the demo world does not have.
pub fn upstreams_of(spec: BffSpec) -> Vec<demo_services::ServiceName> {
    spec.upstreams
        .iter()
        .map(|decl| match demo_services::ServiceName::parse(decl.name) {
            Some(service) => service,
            None => panic!("no demo service for upstream {}", decl.name),
        })
        .collect()
}

/// An access token of demo user `username` for `audience`, from the demo
/// identity provider.
///
/// # Panics
/// When the provider refuses.
pub fn user_token(
    stack: &DemoStack,
    username: &str,
    audience: &str,
    scope: Option<&str>,
) -> String {
    match stack.identity().password_grant(
        username,
        demo_services::data::DEMO_PASSWORD,
        audience,
        scope,
        Algorithm::RS256,
    ) {
        Ok(t) => t.access_token,
        Err(e) => panic!("no token for {username}: {e}"),
    }
}

/// An access token of demo partner `client_id` (secret: the id's suffix
/// followed by `-secret`).
///
/// # Panics
/// When the provider refuses.
pub fn partner_token(stack: &DemoStack, client_id: &str) -> String {
    let secret = format!("{}-secret", client_id.trim_start_matches("partner-"));
    match stack.identity().client_credentials_grant(
        client_id,
        &secret,
        "bff-partner",
        None,
        Algorithm::RS256,
    ) {
        Ok(t) => t.access_token,
        Err(e) => panic!("no token for {client_id}: {e}"),
    }
}

/// Sets a fault on a demo service through the control API (over HTTP, as a
/// client of the demo world would).
///
/// # Panics
/// When the control API refuses the fault.
pub async fn set_fault(stack: &DemoStack, service: &str, fault: serde_json::Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/faults/{service}", stack.control_url()))
        .json(&fault)
        .send()
        .await
        .unwrap_or_else(|e| panic!("control API: {e}"));
    assert_eq!(
        response.status(),
        200,
        "the control API refused the fault {fault} on {service}"
    );
}

/// Clears the fault of a demo service through the control API.
///
/// # Panics
/// When the control API refuses.
pub async fn clear_fault(stack: &DemoStack, service: &str) {
    let response = reqwest::Client::new()
        .delete(format!("{}/faults/{service}", stack.control_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("control API: {e}"));
    assert_eq!(
        response.status(),
        204,
        "the control API refused to clear {service}"
    );
}
