//! The mobile BFF binary.

/// mimalloc, configured by `run_main` (see `bff_alloc` for why).
#[global_allocator]
static ALLOCATOR: bff_alloc::Allocator = bff_alloc::Allocator;

fn main() -> std::process::ExitCode {
    bff_edge::server::run_main(bff_mobile::SPEC, bff_mobile::app)
}
