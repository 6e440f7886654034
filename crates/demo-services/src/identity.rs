//! The development identity provider: discovery, JWKS and a token endpoint
//! (password, client-credentials and refresh-token grants), issuing the same
//! kind of tokens a production IdP would, so that the BFFs verify real JWTs.
//!
//! Keys are generated at start-up (RSA for RS256, P-256 for ES256, Ed25519 for
//! EdDSA), each published with its RFC 7638 thumbprint as `kid`. Refresh
//! tokens rotate on every use, and presenting a used one revokes its whole
//! family (OAuth 2.0 Security BCP, section 4.14).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::jwk::{
    Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::data::{DEMO_PASSWORD, DemoData};
use crate::rest::json;

/// The audiences tokens can be issued for.
pub const AUDIENCES: [&str; 3] = ["bff-mobile", "bff-web", "bff-partner"];
/// Scopes a demo user may be granted.
pub const USER_SCOPES: [&str; 3] = ["profile", "orders", "live"];
/// The longest access-token lifetime the provider issues.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a refresh token stays usable.
pub const REFRESH_TTL: Duration = Duration::from_secs(8 * 3600);

/// Why a key could not be made or a token not signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation or encoding failed.
    #[error("generating a {alg:?} key failed: {message}")]
    Generate {
        /// The algorithm of the key.
        alg: Algorithm,
        /// What failed.
        message: String,
    },
    /// Signing failed.
    #[error("signing a token failed")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// No key for the requested algorithm.
    #[error("no signing key for {0:?}")]
    NoKey(Algorithm),
}

/// One private key with its public JWK.
pub struct SigningKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material.
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid())
            .finish()
    }
}

impl SigningKey {
    fn new(alg: Algorithm, encoding: EncodingKey, mut jwk: Jwk) -> Result<Self, KeyError> {
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Generate {
                alg,
                message: e.to_string(),
            })?;
        jwk.common.key_id = Some(kid);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::EdDSA,
        });
        Ok(SigningKey { alg, encoding, jwk })
    }

    /// Generates a key for `alg` (RS256, ES256 or EdDSA).
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let fail = |message: String| KeyError::Generate { alg, message };
        match alg {
            Algorithm::RS256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                let key =
                    rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| fail(e.to_string()))?;
                let der = key.to_pkcs1_der().map_err(|e| fail(e.to_string()))?;
                let encoding = EncodingKey::from_rsa_der(der.as_bytes());
                let jwk =
                    Jwk::from_encoding_key(&encoding, alg).map_err(|e| fail(e.to_string()))?;
                SigningKey::new(alg, encoding, jwk)
            }
            Algorithm::ES256 => {
                use p256::pkcs8::EncodePrivateKey;
                let key = p256::SecretKey::random(&mut OsRng);
                let der = key.to_pkcs8_der().map_err(|e| fail(e.to_string()))?;
                let encoding = EncodingKey::from_ec_der(der.as_bytes());
                let jwk =
                    Jwk::from_encoding_key(&encoding, alg).map_err(|e| fail(e.to_string()))?;
                SigningKey::new(alg, encoding, jwk)
            }
            Algorithm::EdDSA => {
                let mut seed = [0u8; 32];
                OsRng.fill_bytes(&mut seed);
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                // PKCS#8 v1 of an Ed25519 seed: a fixed 16-byte header, then the seed.
                let mut der = vec![
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ];
                der.extend_from_slice(&seed);
                let encoding = EncodingKey::from_ed_der(&der);
                let mut jwk =
                    Jwk::from_encoding_key(&encoding, alg).map_err(|e| fail(e.to_string()))?;
                jwk.algorithm =
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: jsonwebtoken::jwk::EllipticCurve::Ed25519,
                        x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
                    });
                SigningKey::new(alg, encoding, jwk)
            }
            other => Err(fail(format!("{other:?} is not offered"))),
        }
    }

    /// The key id (RFC 7638 SHA-256 thumbprint).
    pub fn kid(&self) -> &str {
        self.jwk.common.key_id.as_deref().unwrap_or_default()
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` with this key under `header` (whose `alg` and `kid` the
    /// caller chooses: tests use this to forge bad headers).
    pub fn sign_with_header<C: Serialize>(
        &self,
        header: &Header,
        claims: &C,
    ) -> Result<String, KeyError> {
        Ok(jsonwebtoken::encode(header, claims, &self.encoding)?)
    }

    /// Signs `claims` with this key's own `alg` and `kid`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid().to_owned());
        header.typ = Some("JWT".to_owned());
        self.sign_with_header(&header, claims)
    }
}

/// One RS256, one ES256 and one EdDSA key.
#[derive(Debug)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// Generates a fresh set (an RSA key takes a few hundred milliseconds).
    pub fn generate() -> Result<Self, KeyError> {
        Ok(SigningKeys {
            keys: vec![
                SigningKey::generate(Algorithm::RS256)?,
                SigningKey::generate(Algorithm::ES256)?,
                SigningKey::generate(Algorithm::EdDSA)?,
            ],
        })
    }

    /// The key for `alg`.
    pub fn key(&self, alg: Algorithm) -> Result<&SigningKey, KeyError> {
        self.keys
            .iter()
            .find(|k| k.alg == alg)
            .ok_or(KeyError::NoKey(alg))
    }

    /// All keys.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public half, as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user's id, or the partner's client id.
    pub sub: String,
    /// Audience: the BFF the token is for.
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Rate-limit tier.
    pub tier: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The user's login name (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Granted scopes.
    pub scope: String,
    /// A one-time refresh token (password and refresh grants only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// An OAuth error (RFC 6749 section 5.2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The RFC 6749 error code.
    pub code: &'static str,
    /// A readable explanation.
    pub description: String,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }
    fn status(&self) -> StatusCode {
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code, "error_description": self.description });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"demo-identity\""),
            );
        }
        response
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct RefreshRecord {
    family: Uuid,
    user_id: Uuid,
    audience: String,
    scope: String,
    alg: Algorithm,
    expires_at: i64,
    used: bool,
}

#[derive(Default)]
struct RefreshStore {
    /// Keyed by the SHA-256 of the token: the store never holds a usable token.
    tokens: HashMap<[u8; 32], RefreshRecord>,
    revoked_families: HashSet<Uuid>,
}

/// Where refresh-token families live: in this process, or in Redis (when
/// `REDIS_URL` is set), so that a restarted provider still knows which
/// tokens were used and which families are revoked.
enum RefreshBackend {
    Memory(Mutex<RefreshStore>),
    Redis(redis::Client),
}

/// Why a refresh token was refused (or could not be checked).
enum Refused {
    Unknown,
    Reused(Uuid),
    Revoked,
    Expired,
    Unavailable,
}

const REDIS_PREFIX: &str = "demo:identity";

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl RefreshBackend {
    fn redis(client: &redis::Client) -> Result<redis::Connection, Refused> {
        client
            .get_connection_with_timeout(Duration::from_millis(500))
            .map_err(|error| {
                tracing::error!(%error, "the refresh-token store (Redis) is unreachable");
                Refused::Unavailable
            })
    }

    /// Marks the token used and returns its record, or why not.
    fn take(&self, hash: &[u8; 32]) -> Result<RefreshRecord, Refused> {
        match self {
            RefreshBackend::Memory(store) => {
                let mut store = store.lock();
                let Some(record) = store.tokens.get(hash).cloned() else {
                    return Err(Refused::Unknown);
                };
                if record.used {
                    store.revoked_families.insert(record.family);
                    return Err(Refused::Reused(record.family));
                }
                if store.revoked_families.contains(&record.family) {
                    return Err(Refused::Revoked);
                }
                if record.expires_at <= now() {
                    return Err(Refused::Expired);
                }
                if let Some(r) = store.tokens.get_mut(hash) {
                    r.used = true;
                }
                Ok(record)
            }
            RefreshBackend::Redis(client) => {
                use redis::Commands;
                let mut c = Self::redis(client)?;
                let key = format!("{REDIS_PREFIX}:refresh:{}", hex(hash));
                let raw: Option<String> = c.get(&key).map_err(|_| Refused::Unavailable)?;
                let record: RefreshRecord = raw
                    .and_then(|r| serde_json::from_str(&r).ok())
                    .ok_or(Refused::Unknown)?;
                let revoked = format!("{REDIS_PREFIX}:revoked:{}", record.family);
                let ttl = REFRESH_TTL.as_secs();
                // First use wins, atomically, across restarts and replicas.
                let first: bool = redis::cmd("SET")
                    .arg(format!("{REDIS_PREFIX}:used:{}", hex(hash)))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query::<Option<String>>(&mut c)
                    .map_err(|_| Refused::Unavailable)?
                    .is_some();
                if !first {
                    let _: () = c
                        .set_ex(&revoked, 1, ttl)
                        .map_err(|_| Refused::Unavailable)?;
                    return Err(Refused::Reused(record.family));
                }
                let is_revoked: bool = c.exists(&revoked).map_err(|_| Refused::Unavailable)?;
                if is_revoked {
                    return Err(Refused::Revoked);
                }
                if record.expires_at <= now() {
                    return Err(Refused::Expired);
                }
                Ok(record)
            }
        }
    }

    fn put(&self, hash: [u8; 32], record: RefreshRecord) -> Result<(), Refused> {
        match self {
            RefreshBackend::Memory(store) => {
                let mut store = store.lock();
                let now = now();
                if store.tokens.len() > 10_000 {
                    store.tokens.retain(|_, r| r.expires_at > now);
                }
                store.tokens.insert(hash, record);
                Ok(())
            }
            RefreshBackend::Redis(client) => {
                use redis::Commands;
                let mut c = Self::redis(client)?;
                let json = serde_json::to_string(&record).map_err(|_| Refused::Unavailable)?;
                c.set_ex::<_, _, ()>(
                    format!("{REDIS_PREFIX}:refresh:{}", hex(&hash)),
                    json,
                    REFRESH_TTL.as_secs(),
                )
                .map_err(|_| Refused::Unavailable)
            }
        }
    }
}

/// One generation of signing keys.
struct KeyGeneration {
    keys: Arc<SigningKeys>,
    /// When tokens start being signed with it (published before that).
    active_from: Instant,
}

/// The generations of keys, oldest first. A rotation publishes the next
/// generation at once but signs with it only `publish_ahead` later, so
/// every verifier that refreshes its JWKS in between knows the key before
/// the first token signed with it arrives; a generation leaves the JWKS
/// once the tokens it signed have expired (`access_ttl` after the next one
/// took over).
struct KeyRing {
    generations: Vec<KeyGeneration>,
}

impl KeyRing {
    /// The generation signing now: the newest active one.
    fn signing(&self, now: Instant) -> &Arc<SigningKeys> {
        let active = self
            .generations
            .iter()
            .rev()
            .find(|g| g.active_from <= now)
            .or(self.generations.first());
        match active {
            Some(g) => &g.keys,
            // A ring is created with one generation and never emptied below it.
            None => unreachable!("a key ring always holds a generation"),
        }
    }

    /// Drops the generations whose tokens have all expired.
    fn retire(&mut self, now: Instant, ttl: Duration) {
        while self.generations.len() > 1
            && self.generations[1].active_from + ttl <= now
            && self.generations[1].active_from <= now
        {
            self.generations.remove(0);
        }
    }
}

/// The identity provider's state.
pub struct Identity {
    issuer: String,
    keys: RwLock<KeyRing>,
    publish_ahead: Duration,
    data: Arc<DemoData>,
    access_ttl: Duration,
    refresh: RefreshBackend,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn unavailable() -> OAuthError {
    OAuthError::new(
        "temporarily_unavailable",
        "the session store is unavailable; try again",
    )
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares secrets without leaking where they differ through timing.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (sha256(a.as_bytes()), sha256(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Identity {
    /// A provider issuing tokens as `issuer`, valid for `access_ttl` (capped
    /// at 15 minutes), whose rotated keys are published `publish_ahead`
    /// before they sign.
    pub fn new(
        issuer: String,
        data: Arc<DemoData>,
        access_ttl: Duration,
        publish_ahead: Duration,
        redis: Option<redis::Client>,
    ) -> Result<Self, KeyError> {
        Ok(Identity {
            issuer,
            keys: RwLock::new(KeyRing {
                generations: vec![KeyGeneration {
                    keys: Arc::new(SigningKeys::generate()?),
                    active_from: Instant::now(),
                }],
            }),
            publish_ahead,
            data,
            access_ttl: access_ttl.min(MAX_ACCESS_TTL),
            refresh: match redis {
                Some(client) => RefreshBackend::Redis(client),
                None => RefreshBackend::Memory(Mutex::default()),
            },
        })
    }

    /// The `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The keys tokens are signed with now.
    pub fn current_keys(&self) -> Arc<SigningKeys> {
        self.keys.read().signing(Instant::now()).clone()
    }

    /// The published JWKS: every generation whose tokens may still be
    /// valid, and the next one ahead of its use; newest first.
    pub fn jwks(&self) -> JwkSet {
        let mut ring = self.keys.write();
        ring.retire(Instant::now(), self.access_ttl);
        let mut set = JwkSet { keys: Vec::new() };
        for generation in ring.generations.iter().rev() {
            set.keys.extend(generation.keys.jwks().keys);
        }
        set
    }

    /// Generates the next keys: published at once, signing from
    /// `publish_ahead` on (returned: how long until then). The keys they
    /// replace stay published until the tokens they signed have expired.
    pub fn rotate_keys(&self) -> Result<Duration, KeyError> {
        let fresh = Arc::new(SigningKeys::generate()?);
        let mut ring = self.keys.write();
        let now = Instant::now();
        // A rotation while another is pending starts after it.
        let after = ring
            .generations
            .last()
            .map_or(now, |g| g.active_from.max(now));
        ring.generations.push(KeyGeneration {
            keys: fresh,
            active_from: after + self.publish_ahead,
        });
        Ok(after + self.publish_ahead - now)
    }

    fn sign(&self, claims: &AccessClaims, alg: Algorithm) -> Result<String, OAuthError> {
        self.current_keys()
            .key(alg)
            .and_then(|k| k.sign(claims))
            .map_err(|error| {
                tracing::error!(%error, "signing an access token failed");
                OAuthError::new("server_error", "the token could not be signed")
            })
    }

    fn access_claims(
        &self,
        sub: String,
        aud: &str,
        scope: &str,
        tier: &str,
        client_id: &str,
        username: Option<&str>,
    ) -> AccessClaims {
        let iat = now();
        AccessClaims {
            iss: self.issuer.clone(),
            sub,
            aud: aud.to_owned(),
            exp: iat + self.access_ttl.as_secs() as i64,
            iat,
            nbf: iat,
            jti: Uuid::new_v4().to_string(),
            scope: scope.to_owned(),
            tier: tier.to_owned(),
            client_id: client_id.to_owned(),
            preferred_username: username.map(str::to_owned),
        }
    }

    /// The password grant for a demo user.
    pub fn password_grant(
        &self,
        username: &str,
        password: &str,
        audience: &str,
        scope: Option<&str>,
        alg: Algorithm,
    ) -> Result<TokenResponse, OAuthError> {
        let user = self.data.user_by_username(username);
        // Compare even for unknown users, so timing does not reveal which exist.
        let password_ok = secrets_equal(password, DEMO_PASSWORD);
        let user = match user {
            Some(user) if password_ok => user,
            _ => {
                return Err(OAuthError::new(
                    "invalid_grant",
                    "unknown user or wrong password",
                ));
            }
        };
        if !matches!(audience, "bff-mobile" | "bff-web") {
            return Err(OAuthError::new(
                "invalid_request",
                "users may request audience bff-mobile or bff-web",
            ));
        }
        let scope = grant_scope(scope, &USER_SCOPES)?;
        let claims = self.access_claims(
            user.id.to_string(),
            audience,
            &scope,
            &user.tier,
            "demo-app",
            Some(&user.username),
        );
        let access_token = self.sign(&claims, alg)?;
        let family = Uuid::new_v4();
        let refresh_token = self.store_refresh(family, user.id, audience, &scope, alg)?;
        Ok(self.response(access_token, scope, Some(refresh_token)))
    }

    /// The client-credentials grant for a demo partner.
    pub fn client_credentials_grant(
        &self,
        client_id: &str,
        client_secret: &str,
        audience: &str,
        scope: Option<&str>,
        alg: Algorithm,
    ) -> Result<TokenResponse, OAuthError> {
        let partner = self
            .data
            .partners()
            .iter()
            .find(|p| p.client_id == client_id);
        let secret_ok = partner.is_some_and(|p| secrets_equal(client_secret, &p.client_secret));
        let partner = match partner {
            Some(p) if secret_ok => p,
            _ => {
                return Err(OAuthError::new(
                    "invalid_client",
                    "unknown client or wrong secret",
                ));
            }
        };
        if audience != "bff-partner" {
            return Err(OAuthError::new(
                "invalid_request",
                "partner clients may request audience bff-partner only",
            ));
        }
        let allowed: Vec<&str> = partner.scopes.iter().map(String::as_str).collect();
        let scope = grant_scope(scope, &allowed)?;
        let claims = self.access_claims(
            partner.client_id.clone(),
            audience,
            &scope,
            &partner.tier,
            &partner.client_id,
            None,
        );
        let access_token = self.sign(&claims, alg)?;
        Ok(self.response(access_token, scope, None))
    }

    /// The refresh-token grant: rotates the refresh token; a reused one
    /// revokes its family.
    pub fn refresh_grant(
        &self,
        token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let hash = sha256(token.as_bytes());
        let record = self.refresh.take(&hash).map_err(|refused| match refused {
            Refused::Unknown => OAuthError::new("invalid_grant", "unknown refresh token"),
            Refused::Reused(family) => {
                tracing::warn!(%family, "refresh token reuse: family revoked");
                OAuthError::new(
                    "invalid_grant",
                    "refresh token already used; the session has been revoked",
                )
            }
            Refused::Revoked => OAuthError::new("invalid_grant", "the session has been revoked"),
            Refused::Expired => OAuthError::new("invalid_grant", "refresh token expired"),
            Refused::Unavailable => unavailable(),
        })?;
        let (family, user_id, audience, granted, alg) = (
            record.family,
            record.user_id,
            record.audience,
            record.scope,
            record.alg,
        );
        let allowed: Vec<&str> = granted.split(' ').filter(|s| !s.is_empty()).collect();
        let scope = grant_scope(scope, &allowed)?;
        let user = self
            .data
            .user(&user_id)
            .ok_or_else(|| OAuthError::new("invalid_grant", "the user no longer exists"))?;
        let claims = self.access_claims(
            user.id.to_string(),
            &audience,
            &scope,
            &user.tier,
            "demo-app",
            Some(&user.username),
        );
        let access_token = self.sign(&claims, alg)?;
        let refresh_token = self.store_refresh(family, user_id, &audience, &scope, alg)?;
        Ok(self.response(access_token, scope, Some(refresh_token)))
    }

    fn store_refresh(
        &self,
        family: Uuid,
        user_id: Uuid,
        audience: &str,
        scope: &str,
        alg: Algorithm,
    ) -> Result<String, OAuthError> {
        let mut raw = [0u8; 32];
        OsRng.fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        self.refresh
            .put(
                sha256(token.as_bytes()),
                RefreshRecord {
                    family,
                    user_id,
                    audience: audience.to_owned(),
                    scope: scope.to_owned(),
                    alg,
                    expires_at: now() + REFRESH_TTL.as_secs() as i64,
                    used: false,
                },
            )
            .map_err(|_| unavailable())?;
        Ok(token)
    }

    fn response(
        &self,
        access_token: String,
        scope: String,
        refresh_token: Option<String>,
    ) -> TokenResponse {
        TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.access_ttl.as_secs(),
            scope,
            refresh_token,
        }
    }
}

/// The requested scopes if all are allowed, or all allowed ones when none
/// were requested.
fn grant_scope(requested: Option<&str>, allowed: &[&str]) -> Result<String, OAuthError> {
    match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(allowed.join(" ")),
        Some(requested) => {
            let mut granted: Vec<&str> = Vec::new();
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.contains(&s) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("scope {s} is not allowed for this client"),
                    ));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
            Ok(granted.join(" "))
        }
    }
}

/// `GET /.well-known/openid-configuration`, `GET /.well-known/jwks.json` and
/// `POST /oauth/token`.
pub fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(token))
        .with_state(identity)
}

async fn discovery(State(identity): State<Arc<Identity>>) -> Response {
    let issuer = identity.issuer();
    json(&serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "scopes_supported": ["profile", "orders", "live", "catalog:read"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "tier", "client_id", "preferred_username"],
    }))
}

async fn jwks(State(identity): State<Arc<Identity>>) -> Response {
    let mut response = json(&identity.jwks());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
    /// Non-standard: which key signs the token (`RS256`, the default,
    /// `ES256` or `EdDSA`).
    signing_alg: Option<String>,
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, OAuthError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", format!("{field} is required")))
}

/// Client id and secret from HTTP Basic authentication, if present.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::new("invalid_client", "malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(bad());
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some((id.to_owned(), secret.to_owned())))
}

async fn token(State(identity): State<Arc<Identity>>, headers: HeaderMap, body: Bytes) -> Response {
    // Signing (RSA) and the session store (a blocking Redis client) stay
    // off the async workers.
    let result = tokio::task::spawn_blocking(move || issue(&identity, &headers, &body))
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "token issuing failed");
            Err(OAuthError::new(
                "server_error",
                "the token could not be issued",
            ))
        });
    match result {
        Ok(tokens) => {
            let mut response = json(&tokens);
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn issue(
    identity: &Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::new("invalid_request", format!("malformed form body: {e}")))?;
    let alg = match form.signing_alg.as_deref() {
        None | Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(other) => {
            return Err(OAuthError::new(
                "invalid_request",
                format!("signing_alg {other} is not offered"),
            ));
        }
    };
    let audience = |form: &TokenForm| -> Result<String, OAuthError> {
        let aud = required("audience", &form.audience)?;
        if !AUDIENCES.contains(&aud) {
            return Err(OAuthError::new(
                "invalid_request",
                format!("audience must be one of {}", AUDIENCES.join(", ")),
            ));
        }
        Ok(aud.to_owned())
    };
    match required("grant_type", &form.grant_type)? {
        "password" => identity.password_grant(
            required("username", &form.username)?,
            required("password", &form.password)?,
            &audience(&form)?,
            form.scope.as_deref(),
            alg,
        ),
        "client_credentials" => {
            let (id, secret) = match basic_credentials(headers)? {
                Some(pair) => pair,
                None => (
                    required("client_id", &form.client_id)?.to_owned(),
                    required("client_secret", &form.client_secret)?.to_owned(),
                ),
            };
            identity.client_credentials_grant(
                &id,
                &secret,
                &audience(&form)?,
                form.scope.as_deref(),
                alg,
            )
        }
        "refresh_token" => identity.refresh_grant(
            required("refresh_token", &form.refresh_token)?,
            form.scope.as_deref(),
        ),
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type {other} is not supported"),
        )),
    }
}
