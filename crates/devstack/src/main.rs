//! `cargo run -p devstack`: the whole demo world in one process.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    devstack::run(devstack::Args::parse()).await
}
