//! `cargo run -p loadtest --release`: the benchmark harness.

use clap::Parser;

fn main() -> std::process::ExitCode {
    loadtest::main(loadtest::Args::parse())
}
