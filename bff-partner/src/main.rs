//! The partner BFF binary.

/// glibc's allocator spends a fifth of a request's CPU in malloc/free under
/// load (measured with perf); mimalloc keeps per-thread free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bff_edge::server::run_main(bff_partner::SPEC, bff_partner::app)
}
