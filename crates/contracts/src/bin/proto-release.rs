//! `cargo run -p contracts --bin proto-release`: records the current
//! `.proto` files as the released gRPC contract
//! (`contracts/proto/release.binpb`), after a release of the services.

use std::process::ExitCode;

fn main() -> ExitCode {
    match contracts::proto::write_release() {
        Ok(path) => {
            println!("released descriptor set written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("proto-release: {error}");
            ExitCode::FAILURE
        }
    }
}
