//! `otlp-sink`: accepts OTLP (gRPC and HTTP/protobuf) and counts the spans
//! per service at `GET /spans`. It stands in for the OpenTelemetry Collector
//! in the compose stack where no collector image can be pulled (air-gapped
//! machines, the compose end-to-end test); it forwards nothing.
//!
//! Usage: otlp-sink [--listen ADDR]... [--health-check]
//! (default: 0.0.0.0:4317 and 0.0.0.0:4318, the collector's ports).

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen: Vec<SocketAddr> = Vec::new();
    let mut health_check = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--health-check" => health_check = true,
            "--listen" => match args.next().map(|a| a.parse()) {
                Some(Ok(addr)) => listen.push(addr),
                Some(Err(error)) => return usage(&format!("--listen: {error}")),
                None => return usage("--listen expects an address"),
            },
            _ => return usage(&format!("unknown argument '{arg}'")),
        }
    }
    if listen.is_empty() {
        listen = vec![
            SocketAddr::from(([0, 0, 0, 0], 4317)),
            SocketAddr::from(([0, 0, 0, 0], 4318)),
        ];
    }
    if health_check {
        return match bff_probe::get(listen[0], "/spans", std::time::Duration::from_secs(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("otlp-sink: not ready: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let mut listeners = Vec::new();
    for addr in &listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                eprintln!("otlp-sink: cannot listen on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("otlp-sink: OTLP on {listen:?}; spans per service at GET /spans");
    tokio::select! {
        served = testkit::otlp::serve_counting(listeners) => match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("otlp-sink: {error}");
                ExitCode::FAILURE
            }
        },
        _ = shutdown() => ExitCode::SUCCESS,
    }
}

async fn shutdown() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("otlp-sink: {problem} (usage: otlp-sink [--listen ADDR]... [--health-check])");
    ExitCode::from(2)
}
