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
    /// Shift every port: identity at BASE, user at BASE+1, …, inventory at
    /// BASE+7, control API at BASE+99 (the contract's ports are BASE 7000).
    #[arg(long, env = "DEMO_PORT_BASE", default_value_t = 7000)]
    port_base: u16,
    /// Ask the running control API whether it answers, exit 0 if so (a
    /// container HEALTHCHECK); nothing is started.
    #[arg(long)]
    health_check: bool,
    /// Change a random product's stock this often (0 for never).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    stock_every: std::time::Duration,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.health_check {
        return health_check(&args);
    }
    let export = match bff_telemetry::ExportConfig::from_env(|key| std::env::var(key).ok()) {
        Ok(export) => export,
        Err(error) => {
            eprintln!("demo-services: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = match bff_telemetry::init(&bff_telemetry::Options {
        service_name: "demo-services".to_owned(),
        service_version: env!("CARGO_PKG_VERSION").to_owned(),
        log_format: bff_telemetry::LogFormat::detect(),
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        export,
        log_to_stderr: false,
    }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("demo-services: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = run(args).await;
    // Flushing blocks: off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

async fn run(args: Args) -> std::process::ExitCode {
    let Some(control_port) = args.port_base.checked_add(99) else {
        eprintln!(
            "demo-services: --port-base {} leaves no room for the control API",
            args.port_base
        );
        return std::process::ExitCode::from(2);
    };
    let ports = demo_services::ServiceName::ALL
        .into_iter()
        .map(|s| (s, args.port_base + (s.default_port() - 7000)))
        .collect();
    let issuer = args
        .issuer
        .or_else(|| Some(format!("http://127.0.0.1:{}", args.port_base)));
    let config = DemoConfig {
        host: args.host,
        seed: args.seed,
        issuer,
        redis_url: args.redis_url,
        ports,
        control_port,
        stock_simulation: (!args.stock_every.is_zero()).then_some(args.stock_every),
        ..DemoConfig::contract_defaults()
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("demo-services: cannot listen for SIGTERM: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stack = match DemoStack::start(config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("demo-services: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("demo services up; control API at {}", stack.control_url());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stack.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// The control API is served by the same start-up as every service (all are
/// bound before any is served): when it answers, the demo world is up.
fn health_check(args: &Args) -> std::process::ExitCode {
    let Some(port) = args.port_base.checked_add(99) else {
        eprintln!(
            "demo-services: --port-base {} leaves no room for the control API",
            args.port_base
        );
        return std::process::ExitCode::from(2);
    };
    match bff_probe::get(
        (args.host, port).into(),
        "/faults",
        std::time::Duration::from_secs(2),
    ) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo-services: not ready: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
