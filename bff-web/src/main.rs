//! The web BFF binary.

fn main() -> std::process::ExitCode {
    bff_edge::server::run_main(bff_web::SPEC, bff_web::app)
}
