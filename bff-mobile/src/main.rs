//! The mobile BFF binary.

fn main() -> std::process::ExitCode {
    bff_edge::server::run_main(bff_mobile::SPEC, bff_mobile::app)
}
