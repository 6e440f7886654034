//! Properties of token verification, where input is adversarial: whatever
//! arrives — arbitrary bytes, JWT-shaped text with arbitrary headers and
//! claims, a valid token with one edit — the outcome is a clean refusal
//! (an `AuthError`, a 401 problem over HTTP), never a panic, and never an
//! acceptance of anything but the token as it was signed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bff_auth::{AuthConfig, Authenticator};
use bff_upstream::HttpClient;
use demo_services::identity::SigningKeys;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use serde_json::{Value, json};
use testkit::{TEST_ISSUER, TestClaims};

const AUD: &str = "bff-web";

struct World {
    runtime: tokio::runtime::Runtime,
    auth: Arc<Authenticator>,
    valid: Vec<String>,
    kids: Vec<String>,
}

/// Keys given, not fetched (an unknown kid's refetch goes to a closed port).
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let keys = SigningKeys::generate().expect("keys");
        let jwks = keys.jwks();
        let config = AuthConfig::new("http://127.0.0.1:9/jwks.json", TEST_ISSUER, AUD);
        let auth = runtime.block_on(async {
            Arc::new(Authenticator::with_keys(
                config,
                HttpClient::new(Duration::from_millis(200)).expect("client"),
                &[(TEST_ISSUER, &jwks)],
            ))
        });
        let claims = TestClaims::new(AUD, "6f1c0d7e-1111-4222-8333-944455556666", "live");
        let mut valid = Vec::new();
        let mut kids = Vec::new();
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = keys.key(alg).expect("key");
            valid.push(key.sign(&claims).expect("signed"));
            kids.push(key.kid().to_owned());
        }
        World {
            runtime,
            auth,
            valid,
            kids,
        }
    })
}

fn verify(token: &str) -> Result<bff_auth::Claims, bff_auth::AuthError> {
    let w = world();
    w.runtime.block_on(w.auth.verify(token))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The decoded parts of a token, to tell an edit that changed nothing
/// (base64url's unused trailing bits) from one that did.
fn decoded(token: &str) -> Option<Vec<Vec<u8>>> {
    token
        .split('.')
        .map(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(verify(&token).is_err());
    }

    #[test]
    fn arbitrary_headers_and_claims_are_refused(
        alg in prop_oneof![
            Just("none"), Just("HS256"), Just("RS256"), Just("ES256"), Just("EdDSA"), Just("PS512"), Just("xx"),
        ],
        real_kid in any::<bool>(),
        kid in ".{0,40}",
        header_extra in prop::collection::btree_map("[a-z]{1,5}", json_value(), 0..3),
        iss in prop_oneof![Just(TEST_ISSUER.to_owned()), ".{0,30}"],
        exp in any::<i64>(),
        sub in json_value(),
        claims_extra in prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..5),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let w = world();
        let mut header: serde_json::Map<String, Value> = header_extra.into_iter().collect();
        header.insert("alg".into(), json!(alg));
        header.insert("kid".into(), json!(if real_kid { w.kids[0].clone() } else { kid }));
        let mut claims: serde_json::Map<String, Value> = claims_extra.into_iter().collect();
        claims.insert("iss".into(), json!(iss));
        claims.insert("aud".into(), json!(AUD));
        claims.insert("exp".into(), json!(exp));
        claims.insert("sub".into(), sub);
        let token = format!(
            "{}.{}.{}",
            b64(&serde_json::to_vec(&header).expect("json")),
            b64(&serde_json::to_vec(&claims).expect("json")),
            b64(&signature)
        );
        prop_assert!(verify(&token).is_err());
    }

    #[test]
    fn a_valid_token_edited_anywhere_is_refused_unless_nothing_changed(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        edit in 0u8..4,
        byte in prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".to_vec()
        ),
    ) {
        let w = world();
        let original = &w.valid[which];
        let mut token = original.as_bytes().to_vec();
        let i = at.index(token.len());
        match edit {
            0 => token[i] = byte,
            1 => { token.remove(i); }
            2 => token.insert(i, byte),
            _ => token.truncate(i),
        }
        let token = String::from_utf8(token).expect("ascii");
        match verify(&token) {
            Err(_) => {}
            Ok(_) => prop_assert_eq!(
                decoded(&token),
                decoded(original),
                "an edited token was accepted: {}",
                token
            ),
        }
    }

    #[test]
    fn any_authorization_header_gets_a_clean_401(value in "[ -~]{0,200}") {
        let w = world();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                w.auth.clone(),
                bff_auth::require_auth,
            ));
        let request = http::Request::get("/")
            .header("authorization", &value)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = w
            .runtime
            .block_on(tower::ServiceExt::oneshot(app, request))
            .expect("response");
        prop_assert_eq!(response.status(), 401);
        prop_assert_eq!(&response.headers()["content-type"], "application/problem+json");
        prop_assert!(response.headers().contains_key("www-authenticate"));
    }
}

#[test]
fn the_valid_tokens_of_the_world_are_valid() {
    // The properties above would pass vacuously if nothing ever verified.
    for token in &world().valid {
        verify(token).expect("valid");
    }
}
