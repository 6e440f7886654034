//! Compiles the `.proto` files with `protox`, a protobuf compiler written in
//! Rust, so that building needs neither `protoc` on the machine nor a download.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let files = [
        "proto/catalog/v1/product.proto",
        "proto/inventory/v1/inventory.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
