//! The one-command local stack: identity provider, demo services, control API
//! and (unless `--upstreams-only`) the BFFs, on the contract's ports, with
//! ready tokens and copy-paste `curl` lines printed at start.

use std::fmt::Write as _;
use std::process::ExitCode;

use std::future::Future;
use std::pin::Pin;

use bff_edge::{BffConfig, BffSpec, Shared};
use clap::Parser;
use demo_services::{DemoConfig, DemoStack, ServiceName, StartError};
use jsonwebtoken::Algorithm;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "Runs the demo services and the BFFs in one process")]
pub struct Args {
    /// Start the identity provider, demo services and control API only, so a
    /// BFF can be run on its own (`cargo run -p bff-mobile`).
    #[arg(long)]
    pub upstreams_only: bool,
    /// Seed of the deterministic demo data.
    #[arg(long, default_value_t = demo_services::data::DEFAULT_SEED)]
    pub seed: u64,
    /// Publish price changes on this Redis too.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
}

/// Runs until Ctrl-C or SIGTERM. Exit code 1 when something cannot start
/// (most often: a port is already taken).
pub async fn run(args: Args) -> ExitCode {
    // Logs on stderr: stdout is the banner's. With OTEL_EXPORTER_OTLP_ENDPOINT
    // set, the whole demo world is one traced process.
    let export = match bff_telemetry::ExportConfig::from_env(|key| std::env::var(key).ok()) {
        Ok(export) => export,
        Err(error) => {
            eprintln!("devstack: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match bff_telemetry::init(&bff_telemetry::Options {
        service_name: "devstack".to_owned(),
        service_version: env!("CARGO_PKG_VERSION").to_owned(),
        log_format: bff_telemetry::LogFormat::Pretty,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        export,
        log_to_stderr: true,
    }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("devstack: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = serve(args).await;
    // Flushing blocks: off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

async fn serve(args: Args) -> ExitCode {
    let config = DemoConfig {
        seed: args.seed,
        redis_url: args.redis_url.clone(),
        ..DemoConfig::contract_defaults()
    };
    // Register for signals before anything is up, so that a SIGTERM right
    // after the banner is a clean shutdown and not the default kill.
    let signal = bff_edge::server::shutdown_signal();
    let stack = match DemoStack::start(config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("devstack: {}", explain(&error));
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut bffs = Vec::new();
    if !args.upstreams_only {
        for (spec, build) in BFFS {
            match start_bff(spec, build, stopped.clone()).await {
                Ok(task) => bffs.push(task),
                Err(message) => {
                    eprintln!("devstack: {message}");
                    let _ = stop.send(true);
                    stack.shutdown().await;
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    // Whoever started us may stop reading stdout (a closed pipe must not
    // take the stack down, as println! would).
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner(&stack, args.upstreams_only).as_bytes());
        let _ = stdout.flush();
    }
    signal.await;
    eprintln!("devstack: shutting down");
    let _ = stop.send(true);
    for task in bffs {
        let _ = task.await;
    }
    stack.shutdown().await;
    ExitCode::SUCCESS
}

type BuildFn =
    fn(Shared) -> Pin<Box<dyn Future<Output = Result<axum::Router, bff_edge::StartError>> + Send>>;

/// The BFFs devstack runs, with their embedded defaults.
const BFFS: [(BffSpec, BuildFn); 3] = [
    (bff_mobile::SPEC, |s| Box::pin(bff_mobile::app(s))),
    (bff_web::SPEC, |s| Box::pin(bff_web::app(s))),
    (bff_partner::SPEC, |s| Box::pin(bff_partner::app(s))),
];

async fn start_bff(
    spec: BffSpec,
    build: BuildFn,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let config = BffConfig::defaults(spec);
    let (listen, grace) = (config.listen, config.shutdown_grace);
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "port {} ({}) is already in use on {}; stop whatever holds it and try again",
                listen.port(),
                spec.name,
                listen.ip()
            )
        } else {
            format!("cannot listen on {listen} for {}: {e}", spec.name)
        }
    })?;
    let shared = Shared::new(config).map_err(|e| format!("{}: {e}", spec.name))?;
    let app = build(shared)
        .await
        .map_err(|e| format!("{}: {e}", spec.name))?;
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    Ok(tokio::spawn(async move {
        if let Err(error) = bff_edge::server::serve(listener, app, shutdown, grace).await {
            tracing::error!(bff = spec.name, %error, "server error");
        }
    }))
}

fn explain(error: &StartError) -> String {
    match error {
        StartError::Bind { what, addr, source }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            format!(
                "port {} ({what}) is already in use on {}; stop whatever holds it (another devstack?) and try again",
                addr.port(),
                addr.ip()
            )
        }
        other => other.to_string(),
    }
}

fn token(stack: &DemoStack, audience: &str) -> String {
    let identity = stack.identity();
    let issued = if audience == "bff-partner" {
        identity.client_credentials_grant(
            "partner-acme",
            "acme-secret",
            audience,
            None,
            Algorithm::RS256,
        )
    } else {
        identity.password_grant(
            "user0001",
            demo_services::data::DEMO_PASSWORD,
            audience,
            None,
            Algorithm::RS256,
        )
    };
    issued
        .map(|t| t.access_token)
        .unwrap_or_else(|e| format!("<could not issue a token: {e}>"))
}

/// What is printed at start: where everything is and how to try it.
pub fn banner(stack: &DemoStack, upstreams_only: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nDemo services (seed {}):", stack.data().seed());
    for service in ServiceName::ALL {
        let _ = writeln!(out, "  {:<16} {}", service.as_str(), stack.url(service));
    }
    let _ = writeln!(out, "  {:<16} {}", "control API", stack.control_url());
    let user = &stack.data().users()[0];
    let product = &stack.data().products()[0];
    let _ = writeln!(
        out,
        "\nDemo user: {} / {} (id {})",
        user.username,
        demo_services::data::DEMO_PASSWORD,
        user.id
    );
    let _ = writeln!(
        out,
        "Demo partner: partner-acme / acme-secret (tier premium)"
    );
    let _ = writeln!(out, "A product: {} ({})", product.id, product.name);
    let identity = stack.url(ServiceName::Identity);
    let control = stack.control_url();
    let _ = writeln!(out, "\nTry:");
    let _ = writeln!(
        out,
        "  curl -s -X POST {identity}/oauth/token -d grant_type=password -d username={} -d password={} -d audience=bff-mobile",
        user.username,
        demo_services::data::DEMO_PASSWORD
    );
    let _ = writeln!(
        out,
        "  curl -s {}/users/{}",
        stack.url(ServiceName::User),
        user.id
    );
    let _ = writeln!(
        out,
        "  curl -s -X PUT {control}/faults/order -H 'content-type: application/json' -d '{{\"latency_ms\": 800}}'"
    );
    let _ = writeln!(out, "  curl -s -X DELETE {control}/faults/order");
    let _ = writeln!(
        out,
        "  curl -s -X PUT {control}/prices/{} -H 'content-type: application/json' -d '{{\"current\": 1999}}'",
        product.id
    );
    if upstreams_only {
        let _ = writeln!(
            out,
            "\nBFFs not started (--upstreams-only): run one with `cargo run -p bff-mobile` (or bff-web, bff-partner)."
        );
        return out;
    }
    let _ = writeln!(out, "\nBFFs:");
    for (spec, _) in BFFS {
        let _ = writeln!(
            out,
            "  {:<16} http://127.0.0.1:{}",
            spec.name, spec.default_port
        );
    }
    let _ = writeln!(
        out,
        "\nReady tokens (valid 15 minutes; user0001 for mobile and web, partner-acme for partner):"
    );
    let _ = writeln!(out, "  export MOBILE_TOKEN={}", token(stack, "bff-mobile"));
    let _ = writeln!(out, "  export WEB_TOKEN={}", token(stack, "bff-web"));
    let _ = writeln!(
        out,
        "  export PARTNER_TOKEN={}",
        token(stack, "bff-partner")
    );
    let ids: Vec<String> = stack.data().products()[..3]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    let ids = ids.join(",");
    let _ = writeln!(out, "\nThe BFFs:");
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $MOBILE_TOKEN\" http://127.0.0.1:8081/v1/dashboard"
    );
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $WEB_TOKEN\" http://127.0.0.1:8082/v1/dashboard"
    );
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $WEB_TOKEN\" 'http://127.0.0.1:8082/v1/products/{}?includeReviews=true&includeInventory=true'",
        product.id
    );
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $PARTNER_TOKEN\" 'http://127.0.0.1:8083/v2/products?ids={ids}'"
    );
    let _ = writeln!(
        out,
        "  curl -si -H \"Authorization: Bearer $PARTNER_TOKEN\" 'http://127.0.0.1:8083/v1/products?ids={ids}'"
    );
    let _ = writeln!(
        out,
        "  curl -s http://127.0.0.1:8081/readyz; curl -s http://127.0.0.1:8081/metrics | head"
    );
    out
}
