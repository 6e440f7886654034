//! A JWKS served on a free port and a minter for tokens signed by its keys,
//! valid or broken on purpose.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use demo_services::identity::{SigningKey, SigningKeys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tokio::task::JoinHandle;

/// The issuer the test tokens carry unless changed.
pub const TEST_ISSUER: &str = "http://issuer.test";

/// Claims of a test token; every field public so a test can break any one.
#[derive(Debug, Clone, Serialize)]
pub struct TestClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Expiry (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    pub iat: i64,
    /// Not before (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Space-separated scopes.
    pub scope: String,
    /// Rate-limit tier (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl TestClaims {
    /// Valid claims for `audience` and `subject`, expiring in five minutes.
    pub fn new(audience: &str, subject: &str, scope: &str) -> Self {
        let now = now();
        TestClaims {
            iss: TEST_ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: Some(serde_json::Value::String(audience.to_owned())),
            exp: Some(now + 300),
            iat: now,
            nbf: Some(now),
            scope: scope.to_owned(),
            tier: None,
        }
    }
}

/// A JWKS document on a free port, and the private keys behind it.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    keys: Arc<SigningKeys>,
    task: JoinHandle<()>,
}

impl JwksServer {
    /// Generates RS256, ES256 and EdDSA keys and serves their JWKS at
    /// `/.well-known/jwks.json`.
    ///
    /// # Panics
    /// When keys cannot be generated or no port is free.
    pub async fn start() -> Self {
        let keys = match tokio::task::spawn_blocking(SigningKeys::generate).await {
            Ok(Ok(keys)) => Arc::new(keys),
            Ok(Err(e)) => panic!("test keys: {e}"),
            Err(e) => panic!("test keys: {e}"),
        };
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("no port for the test JWKS: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("test JWKS address: {e}"),
        };
        let jwks = serde_json::to_string(&keys.jwks()).unwrap_or_default();
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer { addr, keys, task }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// The key for `alg` (RS256, ES256 or EdDSA).
    ///
    /// # Panics
    /// For any other algorithm.
    pub fn key(&self, alg: Algorithm) -> &SigningKey {
        match self.keys.key(alg) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    /// A valid RS256 token for `claims`.
    pub fn mint(&self, claims: &TestClaims) -> String {
        self.mint_with(Algorithm::RS256, claims)
    }

    /// A valid token for `claims` signed with the `alg` key.
    pub fn mint_with(&self, alg: Algorithm, claims: &TestClaims) -> String {
        match self.key(alg).sign(claims) {
            Ok(t) => t,
            Err(e) => panic!("minting: {e}"),
        }
    }

    /// A token signed by the `alg` key under a header of the caller's making
    /// (unknown `kid`, mismatched `alg`, …).
    pub fn mint_with_header(&self, alg: Algorithm, header: &Header, claims: &TestClaims) -> String {
        match self.key(alg).sign_with_header(header, claims) {
            Ok(t) => t,
            Err(e) => panic!("minting: {e}"),
        }
    }

    /// An HS256 token whose HMAC key is the RSA key's public modulus: the
    /// classic algorithm-confusion attack.
    pub fn mint_hs256(&self, claims: &TestClaims) -> String {
        let rsa = self.key(Algorithm::RS256);
        let secret = serde_json::to_vec(rsa.jwk()).unwrap_or_default();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(rsa.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&secret))
            .unwrap_or_default()
    }

    /// An unsigned token (`alg: none`) naming the RSA key's `kid`.
    pub fn mint_unsigned(&self, claims: &TestClaims) -> String {
        let header = serde_json::json!({ "alg": "none", "typ": "JWT", "kid": self.key(Algorithm::RS256).kid() });
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        format!("{header}.{claims}.")
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
