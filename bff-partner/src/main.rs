//! The partner BFF binary.

fn main() -> std::process::ExitCode {
    bff_edge::server::run_main(bff_partner::SPEC, bff_partner::app)
}
