//! The JWKS cache and token verification.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bff_upstream::HttpClient;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::claims::{Claims, Tier};

/// Where keys come from and what tokens must say.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The JWKS URL.
    pub jwks_url: String,
    /// The required `iss`.
    pub issuer: String,
    /// The audience that must be in `aud`.
    pub audience: String,
    /// How often the JWKS is refetched in the background.
    pub refresh_every: Duration,
    /// The shortest interval between two refetches caused by unknown kids.
    pub min_refetch: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl AuthConfig {
    /// Sound defaults for `jwks_url`, `issuer` and `audience`.
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        AuthConfig {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            refresh_every: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
            leeway: Duration::from_secs(30),
        }
    }
}

/// Why a token was refused. The `Display` text is for logs; clients get
/// [`AuthError::client_message`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No keys loaded yet (the provider has never answered).
    #[error("no signing keys loaded")]
    NoKeys,
    /// The header is malformed or names no `kid`.
    #[error("malformed token header: {0}")]
    Header(String),
    /// The algorithm is not an asymmetric signature we accept.
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No key with this `kid`, even after a refetch.
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// The key is for another algorithm than the token claims.
    #[error("key {kid} is for {key:?}, token says {token:?}")]
    AlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        key: Algorithm,
        /// The token's algorithm.
        token: Algorithm,
    },
    /// Signature, expiry, issuer, audience or claim checks failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The `tier` claim names no tier.
    #[error("unknown tier {0:?}")]
    Tier(String),
}

impl AuthError {
    /// Why, as a metrics label (a fixed set).
    pub fn reason(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self {
            AuthError::NoKeys => "no_keys",
            AuthError::Header(_) => "malformed",
            AuthError::Algorithm(_) | AuthError::AlgorithmMismatch { .. } => "algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::Tier(_) => "tier",
            AuthError::Invalid(e) => match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not_yet_valid",
                ErrorKind::InvalidIssuer => "issuer",
                ErrorKind::InvalidAudience => "audience",
                ErrorKind::MissingRequiredClaim(_) => "missing_claim",
                ErrorKind::InvalidSignature => "signature",
                _ => "invalid",
            },
        }
    }

    /// What a client is told: enough to fix its side, nothing about ours.
    pub fn client_message(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self {
            AuthError::NoKeys => "tokens cannot be verified right now",
            AuthError::Header(_) => "the bearer token is malformed",
            AuthError::Algorithm(_) | AuthError::AlgorithmMismatch { .. } => {
                "the token's signing algorithm is not accepted"
            }
            AuthError::UnknownKey(_) => "the token is signed by an unknown key",
            AuthError::Tier(_) => "the token's tier claim is invalid",
            AuthError::Invalid(e) => match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token is not meant for this API",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                _ => "the bearer token is invalid",
            },
        }
    }
}

#[derive(Clone)]
struct VerifyKey {
    key: DecodingKey,
    alg: Algorithm,
}

struct KeyState {
    keys: Arc<HashMap<String, VerifyKey>>,
    loaded: bool,
    last_fetch: Option<Instant>,
}

/// A token already verified: its claims and the times that bound its use.
#[derive(Clone)]
struct Verified {
    claims: Claims,
    kid: String,
    exp: i64,
    nbf: Option<i64>,
}

/// Verifies tokens; owns the JWKS cache and its background refresh.
///
/// A client sends the same token on every request until it expires, and the
/// signature check (RSA or ECDSA) is the single largest CPU cost of a
/// request; so a token that verified is remembered, by its exact bytes,
/// until its `exp`. Time bounds are re-checked on every hit, and the memory
/// is dropped whenever the key set changes, so a rotated-out key stops
/// accepting tokens just as it would without the memory.
pub struct Authenticator {
    config: AuthConfig,
    http: HttpClient,
    state: RwLock<KeyState>,
    refetch: tokio::sync::Mutex<()>,
    verified: moka::sync::Cache<String, Verified>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("ready", &self.is_ready())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

/// The algorithm a JWK is for: its `alg` when given, else what its key type
/// implies. Symmetric keys give `None`: HMAC is never accepted.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return alg.to_string().parse().ok().filter(is_asymmetric);
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

fn is_asymmetric(alg: &Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn parse_jwks(set: &JwkSet) -> HashMap<String, VerifyKey> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let Some(alg) = key_algorithm(jwk) else {
            tracing::warn!(kid, "JWKS key skipped: no acceptable algorithm");
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, VerifyKey { key, alg });
            }
            Err(error) => tracing::warn!(kid, %error, "JWKS key skipped: unreadable"),
        }
    }
    keys
}

impl Authenticator {
    /// Creates the authenticator and starts the background refresh (the
    /// first fetch happens at once; until it succeeds every token is
    /// refused and readiness reports no keys).
    pub fn start(config: AuthConfig, http: HttpClient) -> Arc<Self> {
        let auth = Arc::new(Authenticator {
            config,
            http,
            state: RwLock::new(KeyState {
                keys: Arc::new(HashMap::new()),
                loaded: false,
                last_fetch: None,
            }),
            refetch: tokio::sync::Mutex::new(()),
            verified: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(Duration::from_secs(900))
                .build(),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&auth)));
        auth
    }

    /// Whether signing keys have been loaded.
    pub fn is_ready(&self) -> bool {
        self.state.read().unwrap_or_else(|p| p.into_inner()).loaded
    }

    /// How many keys are in use.
    pub fn key_count(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .len()
    }

    /// Fetches the JWKS now and replaces the keys; on failure the old keys
    /// stay.
    pub async fn refresh(&self) -> Result<usize, String> {
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .last_fetch = Some(Instant::now());
        let response = self
            .http
            .reqwest()
            .get(&self.config.jwks_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("JWKS fetch failed: status {}", response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("JWKS read failed: {e}"))?;
        if body.len() > 256 * 1024 {
            return Err("JWKS document too large".to_owned());
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("JWKS is not valid: {e}"))?;
        let keys = parse_jwks(&set);
        if keys.is_empty() {
            return Err("JWKS has no usable signing key".to_owned());
        }
        let count = keys.len();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let same =
            state.keys.len() == keys.len() && keys.keys().all(|k| state.keys.contains_key(k));
        state.keys = Arc::new(keys);
        state.loaded = true;
        drop(state);
        if !same {
            // A key may have gone: nothing verified with the old set counts.
            self.verified.invalidate_all();
        }
        Ok(count)
    }

    fn lookup(&self, kid: &str) -> Result<Option<VerifyKey>, AuthError> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if !state.loaded {
            return Err(AuthError::NoKeys);
        }
        Ok(state.keys.get(kid).cloned())
    }

    /// Refetches for an unknown kid, at most once per `min_refetch`.
    async fn refetch_for(&self, kid: &str) -> Result<Option<VerifyKey>, AuthError> {
        let _one_at_a_time = self.refetch.lock().await;
        if let Some(found) = self.lookup(kid)? {
            return Ok(Some(found));
        }
        let recent = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_fetch
            .is_some_and(|t| t.elapsed() < self.config.min_refetch);
        if !recent && let Err(error) = self.refresh().await {
            tracing::warn!(%error, "JWKS refetch for an unknown kid failed");
        }
        self.lookup(kid)
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if let Some(hit) = self.verified.get(token) {
            let now = now_unix();
            let leeway = self.config.leeway.as_secs() as i64;
            let in_time = now <= hit.exp + leeway && hit.nbf.is_none_or(|nbf| nbf - leeway <= now);
            if in_time && self.lookup(&hit.kid)?.is_some() {
                return Ok(hit.claims);
            }
            self.verified.invalidate(token);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Header(e.to_string()))?;
        if !is_asymmetric(&header.alg) {
            return Err(AuthError::Algorithm(header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Header("no kid".to_owned()))?;
        let key = match self.lookup(&kid)? {
            Some(key) => key,
            None => self
                .refetch_for(&kid)
                .await?
                .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?,
        };
        if key.alg != header.alg {
            return Err(AuthError::AlgorithmMismatch {
                kid,
                key: key.alg,
                token: header.alg,
            });
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.required_spec_claims =
            HashSet::from(["exp", "iss", "aud", "sub"].map(String::from));
        let data = jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation)?;
        let raw = data.claims;
        let (exp, nbf) = (raw.exp, raw.nbf);
        let tier = match raw.tier.as_deref() {
            None => Tier::Standard,
            Some(t) => Tier::parse(t).ok_or_else(|| AuthError::Tier(t.to_owned()))?,
        };
        let scopes = raw
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let claims = Claims {
            sub: raw.sub,
            scopes,
            tier,
            expires_at: exp,
        };
        self.verified.insert(
            token.to_owned(),
            Verified {
                claims: claims.clone(),
                kid,
                exp,
                nbf,
            },
        );
        Ok(claims)
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Keeps the keys fresh while the authenticator lives: quickly retried until
/// the first success, then every `refresh_every`.
async fn refresh_loop(auth: Weak<Authenticator>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(strong) = auth.upgrade() else { return };
        let wait = match strong.refresh().await {
            Ok(count) => {
                tracing::debug!(count, "JWKS refreshed");
                backoff = Duration::from_millis(200);
                strong.config.refresh_every
            }
            Err(error) => {
                tracing::warn!(%error, keys_in_use = strong.key_count(), "JWKS refresh failed; keeping the last good keys");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                backoff.min(strong.config.refresh_every)
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}
