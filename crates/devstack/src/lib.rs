//! The one-command local stack: identity provider, demo services, control API
//! and (unless `--upstreams-only`) the BFFs, on the contract's ports, with
//! ready tokens and copy-paste `curl` lines printed at start.

use std::fmt::Write as _;
use std::process::ExitCode;

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
    init_tracing();
    let config = DemoConfig {
        seed: args.seed,
        redis_url: args.redis_url.clone(),
        ..DemoConfig::contract_defaults()
    };
    let stack = match DemoStack::start(config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("devstack: {}", explain(&error));
            return ExitCode::FAILURE;
        }
    };
    // Register for signals before telling anyone we are up, so that a SIGTERM
    // right after the banner is a clean shutdown and not the default kill.
    let signal = shutdown_signal();
    println!("{}", banner(&stack, args.upstreams_only));
    signal.await;
    eprintln!("devstack: shutting down");
    stack.shutdown().await;
    ExitCode::SUCCESS
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
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
    } else {
        let _ = writeln!(out, "\nReady tokens (valid 15 minutes):");
        for aud in ["bff-mobile", "bff-web", "bff-partner"] {
            let _ = writeln!(out, "  {aud}: {}", token(stack, aud));
        }
    }
    out
}
