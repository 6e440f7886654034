//! The identity provider issues tokens that verify against its own JWKS, and
//! rotates refresh tokens with reuse detection.

use std::time::Duration;

use demo_services::ServiceName;
use demo_services::identity::AccessClaims;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn token(base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// Verifies `token` the way a BFF will: key by `kid` from the JWKS, algorithm
/// from the key.
async fn verify(base: &str, token: &str, audience: &str) -> AccessClaims {
    let jwks: JwkSet = client()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("kid in JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("decoding key");
    let alg = jwk
        .common
        .key_algorithm
        .expect("alg")
        .to_string()
        .parse()
        .expect("alg");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[base]);
    jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .expect("verifies")
        .claims
}

#[tokio::test]
async fn password_grant_tokens_verify_against_the_jwks() {
    let stack = testkit::start_demo().await;
    let base = stack.url(ServiceName::Identity);
    let discovery: Value = client()
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(discovery["issuer"], base);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{base}/.well-known/jwks.json")
    );

    let user = &stack.data().users()[0];
    for alg in ["RS256", "ES256", "EdDSA"] {
        let (status, body) = token(
            &base,
            &[
                ("grant_type", "password"),
                ("username", &user.username),
                ("password", "demo-password"),
                ("audience", "bff-web"),
                ("signing_alg", alg),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["expires_in"].as_u64().is_some_and(|s| s <= 900));
        let claims = verify(
            &base,
            body["access_token"].as_str().expect("token"),
            "bff-web",
        )
        .await;
        assert_eq!(claims.sub, user.id.to_string());
        assert_eq!(claims.scope, "profile orders live");
        assert!(claims.exp - claims.iat <= 900);
        assert_eq!(
            jsonwebtoken::decode_header(body["access_token"].as_str().expect("t"))
                .expect("h")
                .alg,
            alg.parse::<jsonwebtoken::Algorithm>().expect("alg")
        );
    }
}

#[tokio::test]
async fn client_credentials_for_partners() {
    let stack = testkit::start_demo().await;
    let base = stack.url(ServiceName::Identity);
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "partner-acme"),
            ("client_secret", "acme-secret"),
            ("audience", "bff-partner"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let claims = verify(
        &base,
        body["access_token"].as_str().expect("token"),
        "bff-partner",
    )
    .await;
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.scope.as_str(),
            claims.tier.as_str()
        ),
        ("partner-acme", "catalog:read", "premium")
    );

    // HTTP Basic client authentication works too.
    let response = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("partner-initech", Some("initech-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "bff-partner"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);

    let (status, body) = token(
        &base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "partner-acme"),
            ("client_secret", "wrong"),
            ("audience", "bff-partner"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn bad_token_requests_get_oauth_errors() {
    let stack = testkit::start_demo().await;
    let base = stack.url(ServiceName::Identity);
    type Form<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Form<'_>, u16, &str); 6] = [
        (
            &[
                ("grant_type", "password"),
                ("username", "user0001"),
                ("password", "nope"),
                ("audience", "bff-web"),
            ],
            400,
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", "nobody"),
                ("password", "demo-password"),
                ("audience", "bff-web"),
            ],
            400,
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", "user0001"),
                ("password", "demo-password"),
            ],
            400,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", "user0001"),
                ("password", "demo-password"),
                ("audience", "bff-web"),
                ("scope", "admin"),
            ],
            400,
            "invalid_scope",
        ),
        (&[("grant_type", "implicit")], 400, "unsupported_grant_type"),
        (
            &[("grant_type", "refresh_token"), ("refresh_token", "forged")],
            400,
            "invalid_grant",
        ),
    ];
    for (form, status, error) in cases {
        let (got, body) = token(&base, form).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{form:?}"
        );
    }
    let response = client()
        .post(format!("{base}/oauth/token"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400, "a body that is not a form");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let stack = testkit::start_demo().await;
    let base = stack.url(ServiceName::Identity);
    let (_, first) = token(
        &base,
        &[
            ("grant_type", "password"),
            ("username", "user0002"),
            ("password", "demo-password"),
            ("audience", "bff-mobile"),
        ],
    )
    .await;
    let r1 = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let (status, second) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, 200);
    let r2 = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(r1, r2);
    verify(
        &base,
        second["access_token"].as_str().expect("token"),
        "bff-mobile",
    )
    .await;

    // Replaying the first token is theft: it fails and revokes the family,
    // so the legitimately rotated token stops working too.
    let (status, body) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn rotated_keys_keep_old_tokens_verifiable() {
    let stack = testkit::start_demo().await;
    let base = stack.url(ServiceName::Identity);
    let form = [
        ("grant_type", "password"),
        ("username", "user0003"),
        ("password", "demo-password"),
        ("audience", "bff-web"),
    ];
    let (_, before) = token(&base, &form).await;
    let response = client()
        .post(format!("{}/identity/rotate-keys", stack.control_url()))
        .send()
        .await
        .expect("rotate");
    assert_eq!(response.status(), 200);
    let (_, after) = token(&base, &form).await;
    let kid = |t: &Value| {
        jsonwebtoken::decode_header(t["access_token"].as_str().expect("t"))
            .expect("h")
            .kid
    };
    assert_ne!(kid(&before), kid(&after));
    verify(
        &base,
        before["access_token"].as_str().expect("t"),
        "bff-web",
    )
    .await;
    verify(&base, after["access_token"].as_str().expect("t"), "bff-web").await;
}

#[tokio::test]
async fn with_redis_a_used_refresh_token_replayed_after_a_restart_revokes_its_family() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let config = || demo_services::DemoConfig {
        redis_url: Some(redis.url()),
        ..demo_services::DemoConfig::ephemeral()
    };
    let first_run = testkit::start_demo_with(config()).await;
    let base = first_run.url(ServiceName::Identity);
    let (_, first) = token(
        &base,
        &[
            ("grant_type", "password"),
            ("username", "user0004"),
            ("password", "demo-password"),
            ("audience", "bff-web"),
        ],
    )
    .await;
    let r1 = first["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, second) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    first_run.shutdown().await;

    // A new provider process, the same Redis: it knows r1 was used.
    let second_run = testkit::start_demo_with(config()).await;
    let base = second_run.url(ServiceName::Identity);
    let (status, body) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("already used")),
        "{body}"
    );
    // The replay revoked the family: the legitimately rotated token too.
    let (status, body) = token(
        &base,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}
