//! Token verification on arbitrary input: `cargo +nightly fuzz run
//! verify_token` (from `fuzz/`). Any outcome but a panic is fine; the
//! property tests in `shared/auth/tests/properties.rs` check what the
//! outcome must be.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bff_auth::{AuthConfig, Authenticator};
use bff_upstream::HttpClient;
use demo_services::identity::SigningKeys;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "http://issuer.fuzz";

fn world() -> &'static (tokio::runtime::Runtime, Authenticator) {
    static WORLD: OnceLock<(tokio::runtime::Runtime, Authenticator)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let keys = SigningKeys::generate().expect("keys");
        let jwks = keys.jwks();
        // An unknown kid's refetch goes to a closed port, at most every 10 s.
        let config = AuthConfig::new("http://127.0.0.1:9/jwks.json", ISSUER, "bff-web");
        let auth = runtime.block_on(async {
            Authenticator::with_keys(
                config,
                HttpClient::new(Duration::from_millis(50)).expect("client"),
                &[(ISSUER, &jwks)],
            )
        });
        (runtime, auth)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, auth) = world();
    let token = String::from_utf8_lossy(data);
    let _ = runtime.block_on(auth.verify(&token));
});
