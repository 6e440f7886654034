//! Several trusted issuers at once, each with its own keys, audiences,
//! algorithms and claim names; and the memory of verified tokens, bounded
//! in bytes whatever the number of valid tokens thrown at it.

use std::sync::Arc;
use std::time::Duration;

use bff_auth::{AuthConfig, AuthError, Authenticator, IssuerConfig, Tier};
use bff_upstream::HttpClient;
use jsonwebtoken::Algorithm;
use serde_json::json;
use testkit::{JwksServer, TEST_ISSUER, TestClaims};

const AUD: &str = "bff-web";
const PARTNERS: &str = "http://partners.test";

async fn start(config: AuthConfig) -> Arc<Authenticator> {
    let auth = Authenticator::start(
        config,
        HttpClient::new(Duration::from_secs(1)).expect("client"),
    );
    for _ in 0..200 {
        if auth.is_ready() {
            return auth;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the keys of every issuer did not load");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A token in the partners' provider's shape: scopes in `scp` (a list),
/// the tier in `plan`.
fn partner_claims(aud: &str) -> serde_json::Value {
    json!({
        "iss": PARTNERS,
        "sub": "partner-acme",
        "aud": aud,
        "exp": now() + 300,
        "iat": now(),
        "scp": ["catalog:read", "live"],
        "plan": "premium",
    })
}

#[tokio::test]
async fn two_issuers_each_accepted_with_its_own_keys_and_rules() {
    let (ours, theirs) = (JwksServer::start().await, JwksServer::start().await);
    let partners = IssuerConfig {
        name: "partners".into(),
        issuer: PARTNERS.into(),
        jwks_url: theirs.jwks_url(),
        audiences: vec![AUD.into(), "partner-api".into()],
        algorithms: vec![Algorithm::ES256],
        scope_claim: "scp".into(),
        tier_claim: "plan".into(),
    };
    let auth = start(AuthConfig::with_issuers(vec![
        IssuerConfig::new("default", ours.jwks_url(), TEST_ISSUER, AUD),
        partners,
    ]))
    .await;

    // Each issuer's own token, with its own keys and claim names.
    let mine = TestClaims::new(AUD, "6f1c0d7e-1111-4222-8333-944455556666", "profile live");
    let claims = auth.verify(&ours.mint(&mine)).await.expect("ours");
    assert_eq!((&*claims.issuer, claims.tier), ("default", Tier::Standard));
    assert!(claims.has_scope("live"));
    let sign = |server: &JwksServer, alg, claims: &serde_json::Value| {
        server.key(alg).sign(claims).expect("signed")
    };
    let theirs_token = sign(&theirs, Algorithm::ES256, &partner_claims("partner-api"));
    let claims = auth.verify(&theirs_token).await.expect("theirs");
    assert_eq!(&*claims.issuer, "partners");
    assert_eq!(claims.sub, "partner-acme");
    assert_eq!(claims.tier, Tier::Premium, "from `plan`");
    assert!(
        claims.has_scope("catalog:read") && claims.has_scope("live"),
        "from `scp`"
    );

    // A token of one issuer signed with the other's key.
    let forged = sign(&ours, Algorithm::ES256, &partner_claims(AUD));
    assert!(matches!(
        auth.verify(&forged).await,
        Err(AuthError::UnknownKey(_))
    ));
    let forged = theirs.mint_with(Algorithm::ES256, &mine);
    assert!(matches!(
        auth.verify(&forged).await,
        Err(AuthError::UnknownKey(_))
    ));
    // Their rules, not ours: only ES256, only their audiences.
    let rs256 = sign(&theirs, Algorithm::RS256, &partner_claims("partner-api"));
    assert!(matches!(
        auth.verify(&rs256).await,
        Err(AuthError::Algorithm(Algorithm::RS256))
    ));
    let elsewhere = sign(&theirs, Algorithm::ES256, &partner_claims("bff-mobile"));
    let refused = auth
        .verify(&elsewhere)
        .await
        .expect_err("their audience only");
    assert_eq!(refused.reason(), "audience");
    // An issuer nobody trusts is refused before any key is looked up.
    let stranger = TestClaims {
        iss: "http://stranger.test".into(),
        ..mine.clone()
    };
    let refused = auth
        .verify(&ours.mint(&stranger))
        .await
        .expect_err("untrusted");
    assert!(matches!(refused, AuthError::UnknownIssuer(_)));
    assert_eq!(refused.reason(), "issuer");
    // Claims of the wrong shape are refused cleanly.
    let mut odd = partner_claims("partner-api");
    odd["scp"] = json!([1, 2]);
    let refused = auth
        .verify(&sign(&theirs, Algorithm::ES256, &odd))
        .await
        .expect_err("scopes must be strings");
    assert_eq!(refused.reason(), "claim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_of_verified_tokens_stays_under_its_ceiling() {
    const TOKENS: usize = 100_000;
    const CEILING: u64 = 1024 * 1024;
    let jwks = Arc::new(JwksServer::start().await);
    let mut config = AuthConfig::new(jwks.jwks_url(), TEST_ISSUER, AUD);
    config.remembered_bytes = CEILING;
    let auth = start(config).await;
    // 100,000 distinct valid tokens, minted on both cores.
    let mut minting = Vec::new();
    for part in 0..4 {
        let jwks = jwks.clone();
        minting.push(tokio::task::spawn_blocking(move || {
            (part * TOKENS / 4..(part + 1) * TOKENS / 4)
                .map(|i| {
                    let claims =
                        TestClaims::new(AUD, &format!("user-{i:06}"), "profile orders live");
                    jwks.mint_with(Algorithm::EdDSA, &claims)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut tokens = Vec::with_capacity(TOKENS);
    for part in minting {
        tokens.extend(part.await.expect("minted"));
    }
    for token in &tokens {
        auth.verify(token).await.expect("valid");
    }
    let held = auth.remembered_bytes();
    assert!(
        held <= CEILING,
        "{held} bytes held over a {CEILING}-byte ceiling"
    );
    assert!(held > CEILING / 2, "the memory is used: {held} bytes");
    // Still correct after evictions: any of them verifies again.
    for token in tokens.iter().step_by(10_000) {
        auth.verify(token).await.expect("valid again");
    }
}

#[tokio::test]
async fn an_oversized_jwks_is_refused_before_it_is_parsed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let addr = listener.local_addr().expect("addr");
    let body = format!(r#"{{"keys":[],"padding":"{}"}}"#, "x".repeat(300 * 1024));
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let auth = Authenticator::start(
        AuthConfig::new(format!("http://{addr}/jwks"), TEST_ISSUER, AUD),
        HttpClient::new(Duration::from_secs(1)).expect("client"),
    );
    let error = auth.refresh().await.expect_err("too large");
    assert!(error.contains("over the 262144 accepted"), "{error}");
    assert!(!auth.is_ready());
}
