//! Every rejection case of the contract's Tokens section, against a real
//! JWKS served over HTTP.

use std::sync::Arc;
use std::time::Duration;

use bff_auth::{AuthConfig, Authenticator, Tier};
use bff_upstream::HttpClient;
use jsonwebtoken::{Algorithm, Header};
use testkit::{JwksServer, TEST_ISSUER, TestClaims};

const AUD: &str = "bff-web";

async fn setup() -> (JwksServer, Arc<Authenticator>) {
    let jwks = JwksServer::start().await;
    let mut config = AuthConfig::new(jwks.jwks_url(), TEST_ISSUER, AUD);
    config.min_refetch = Duration::from_millis(100);
    let auth = Authenticator::start(
        config,
        HttpClient::new(Duration::from_secs(1)).expect("client"),
    );
    for _ in 0..100 {
        if auth.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.is_ready(), "keys load");
    (jwks, auth)
}

fn valid() -> TestClaims {
    TestClaims::new(AUD, "6f1c0d7e-1111-4222-8333-944455556666", "profile live")
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_and_reads_the_claims() {
    let (jwks, auth) = setup().await;
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let claims = auth
            .verify(&jwks.mint_with(alg, &valid()))
            .await
            .expect("valid token");
        assert_eq!(claims.sub, "6f1c0d7e-1111-4222-8333-944455556666");
        assert!(claims.has_scope("live") && !claims.has_scope("catalog:read"));
        assert_eq!(claims.tier, Tier::Standard, "absent tier means standard");
    }
    let mut premium = valid();
    premium.tier = Some("premium".into());
    premium.aud = Some(serde_json::json!(["other", AUD]));
    let claims = auth
        .verify(&jwks.mint(&premium))
        .await
        .expect("aud list containing ours");
    assert_eq!(claims.tier, Tier::Premium);
    assert!(claims.require_scope("catalog:read").is_err());
}

#[tokio::test]
async fn rejects_every_bad_token() {
    let (jwks, auth) = setup().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let rsa_kid = jwks.key(Algorithm::RS256).kid().to_owned();

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push(("alg none", jwks.mint_unsigned(&valid())));
    cases.push((
        "HS256 with the public key as secret",
        jwks.mint_hs256(&valid()),
    ));
    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("no-such-key".into());
    cases.push((
        "unknown kid",
        jwks.mint_with_header(Algorithm::RS256, &unknown_kid, &valid()),
    ));
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    cases.push((
        "no kid",
        jwks.mint_with_header(Algorithm::RS256, &no_kid, &valid()),
    ));
    let mut wrong_alg = Header::new(Algorithm::RS384);
    wrong_alg.kid = Some(rsa_kid.clone());
    cases.push((
        "RSA key used with RS384",
        jwks.mint_with_header(Algorithm::RS256, &wrong_alg, &valid()),
    ));
    let mut ec_kid_rsa_sig = Header::new(Algorithm::RS256);
    ec_kid_rsa_sig.kid = Some(jwks.key(Algorithm::ES256).kid().to_owned());
    cases.push((
        "EC kid, RSA signature",
        jwks.mint_with_header(Algorithm::RS256, &ec_kid_rsa_sig, &valid()),
    ));
    let good = jwks.mint(&valid());
    let (head, rest) = good.split_once('.').expect("jwt");
    let (payload, _) = rest.split_once('.').expect("jwt");
    let other = jwks.mint(&TestClaims {
        sub: "someone-else".into(),
        ..valid()
    });
    let other_sig = other.rsplit_once('.').expect("jwt").1;
    cases.push(("bad signature", format!("{head}.{payload}.{other_sig}")));
    cases.push((
        "wrong iss",
        jwks.mint(&TestClaims {
            iss: "http://evil.test".into(),
            ..valid()
        }),
    ));
    cases.push((
        "wrong aud",
        jwks.mint(&TestClaims {
            aud: Some(serde_json::json!("bff-mobile")),
            ..valid()
        }),
    ));
    cases.push((
        "no aud",
        jwks.mint(&TestClaims {
            aud: None,
            ..valid()
        }),
    ));
    cases.push((
        "no exp",
        jwks.mint(&TestClaims {
            exp: None,
            ..valid()
        }),
    ));
    cases.push((
        "expired beyond leeway",
        jwks.mint(&TestClaims {
            exp: Some(now - 31),
            ..valid()
        }),
    ));
    cases.push((
        "nbf in the future beyond leeway",
        jwks.mint(&TestClaims {
            nbf: Some(now + 120),
            ..valid()
        }),
    ));
    cases.push((
        "unknown tier",
        jwks.mint(&TestClaims {
            tier: Some("gold".into()),
            ..valid()
        }),
    ));
    cases.push(("garbage", "a.b.c".to_owned()));

    // The same cases over HTTP: 401 problem+json with a Bearer challenge.
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|claims: bff_auth::Claims| async move { claims.sub.clone() }),
        )
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            bff_auth::require_auth,
        ));
    for (name, token) in cases {
        let result = auth.verify(&token).await;
        assert!(result.is_err(), "{name} must be rejected");
        let request = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty());
        let response = tower::ServiceExt::oneshot(app.clone(), request.expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        // RFC 6750: the refused token's challenge says why.
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let problem: serde_json::Value = serde_json::from_slice(
            &axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .expect("body"),
        )
        .expect("JSON");
        assert_eq!(
            challenge,
            format!(
                "Bearer realm=\"{AUD}\", error=\"invalid_token\", error_description=\"{}\"",
                problem["detail"].as_str().expect("detail")
            ),
            "{name}"
        );
    }
    // Without credentials: the challenge names the realm and no error.
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        http::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer realm=\"{AUD}\"")
    );
    // A missing scope: 403 with the insufficient_scope challenge.
    let scoped = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|claims: bff_auth::Claims| async move {
                claims.require_scope("catalog:read")
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            bff_auth::require_auth,
        ));
    let response = tower::ServiceExt::oneshot(
        scoped,
        http::Request::get("/")
            .header("authorization", format!("Bearer {}", jwks.mint(&valid())))
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"catalog:read\""
    );
    let request =
        http::Request::get("/").header("authorization", format!("Bearer {}", jwks.mint(&valid())));
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        request.body(axum::body::Body::empty()).expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 200, "a valid token passes");

    // Within the 30 s leeway is still fine.
    let ok = auth
        .verify(&jwks.mint(&TestClaims {
            exp: Some(now - 5),
            nbf: Some(now + 10),
            ..valid()
        }))
        .await;
    assert!(ok.is_ok(), "within leeway: {ok:?}");
}

#[tokio::test]
async fn keeps_the_last_good_keys_when_the_provider_is_down() {
    let (jwks, auth) = setup().await;
    let token = jwks.mint(&valid());
    let url_base = jwks.jwks_url();
    drop(jwks);
    // The provider is gone; a refresh fails, and verification still works
    // with the cached keys.
    assert!(
        auth.refresh().await.is_err(),
        "refresh fails against {url_base}"
    );
    assert!(auth.is_ready());
    assert!(auth.verify(&token).await.is_ok());
}

#[tokio::test]
async fn not_ready_until_keys_load() {
    let config = AuthConfig::new("http://127.0.0.1:9/jwks.json", TEST_ISSUER, AUD);
    let auth = Authenticator::start(
        config,
        HttpClient::new(Duration::from_millis(200)).expect("client"),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!auth.is_ready());
    let jwks = JwksServer::start().await;
    let err = auth
        .verify(&jwks.mint(&valid()))
        .await
        .expect_err("no keys yet");
    assert_eq!(err.client_message(), "tokens cannot be verified right now");
}

#[tokio::test]
async fn a_remembered_token_still_expires() {
    let (jwks, auth) = setup().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Expired 29 s ago: inside the 30 s leeway, for one more second or so.
    let token = jwks.mint(&TestClaims {
        exp: Some(now - 29),
        ..valid()
    });
    assert!(auth.verify(&token).await.is_ok());
    assert!(auth.verify(&token).await.is_ok(), "remembered");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        auth.verify(&token).await.is_err(),
        "past exp + leeway, remembered or not"
    );
}

#[tokio::test]
async fn a_remembered_token_of_a_retired_key_is_refused() {
    // Short-lived tokens, so that a rotated-out key retires soon.
    let stack = testkit::start_demo_with(demo_services::DemoConfig {
        access_token_ttl: Duration::from_secs(1),
        ..demo_services::DemoConfig::ephemeral()
    })
    .await;
    let identity = stack.url(demo_services::ServiceName::Identity);
    let mut config = AuthConfig::new(
        format!("{identity}/.well-known/jwks.json"),
        identity.clone(),
        "bff-web",
    );
    config.min_refetch = Duration::from_millis(10);
    let auth = Authenticator::start(
        config,
        HttpClient::new(Duration::from_secs(1)).expect("client"),
    );
    while !auth.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    assert!(auth.verify(&token).await.is_ok());
    // A rotation: the token's key leaves the JWKS once its tokens expired.
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");
    stack.identity().rotate_keys().expect("rotate");
    let published = |stack: &demo_services::DemoStack| {
        stack
            .identity()
            .jwks()
            .keys
            .iter()
            .any(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
    };
    assert!(published(&stack), "kept while its tokens may be valid");
    let started = std::time::Instant::now();
    while published(&stack) {
        assert!(started.elapsed() < Duration::from_secs(5), "never retired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    auth.refresh().await.expect("refresh");
    let err = auth.verify(&token).await.expect_err("retired key");
    assert_eq!(
        err.client_message(),
        "the token is signed by an unknown key"
    );
    let fresh = testkit::user_token(&stack, "user0001", "bff-web", None);
    assert!(
        auth.verify(&fresh).await.is_ok(),
        "the new key is fetched for its unknown kid"
    );
}
