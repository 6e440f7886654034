//! Generated protobuf types and tonic clients/servers for the gRPC domain
//! services.
//!
//! The `.proto` files are the contract between the BFFs and the services; they
//! live here, in one crate, so that the demo services and every BFF compile
//! against the very same definitions.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `catalog.v1`: the product catalogue.
pub mod catalog {
    /// Version 1 of the catalogue API.
    pub mod v1 {
        tonic::include_proto!("catalog.v1");
    }
}

/// `inventory.v1`: stock levels and the stock watch stream.
pub mod inventory {
    /// Version 1 of the inventory API.
    pub mod v1 {
        tonic::include_proto!("inventory.v1");
    }
}
