//! Runs the demo services and the control API on the contract's ports.

use clap::Parser;
use demo_services::{DemoConfig, DemoStack};

/// The demo domain services, identity provider and control API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to bind every service to (containers use 0.0.0.0).
    #[arg(long, env = "DEMO_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Seed of the deterministic demo data.
    #[arg(long, env = "DEMO_SEED", default_value_t = demo_services::data::DEFAULT_SEED)]
    seed: u64,
    /// The `iss` claim of issued tokens (default: http://127.0.0.1:7000).
    #[arg(long, env = "DEMO_ISSUER")]
    issuer: Option<String>,
    /// Publish price changes on this Redis as well.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = DemoConfig {
        host: args.host,
        seed: args.seed,
        issuer: args.issuer,
        redis_url: args.redis_url,
        ..DemoConfig::contract_defaults()
    };
    let stack = match DemoStack::start(config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("demo-services: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("demo services up; control API at {}", stack.control_url());
    let _ = tokio::signal::ctrl_c().await;
    stack.shutdown().await;
    std::process::ExitCode::SUCCESS
}
