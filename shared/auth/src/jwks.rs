//! The JWKS caches of the trusted issuers, and token verification.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bff_upstream::{
    CallContext, HttpClient, Protocol, RestClient, Upstream, UpstreamPolicy,
    transport::http::HttpTransport,
};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::{ClaimSet, Claims, Tier};

/// The largest JWKS document accepted (a provider's holds a few keys of a
/// few hundred bytes each).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One trusted identity provider: where its keys are and how to read its
/// tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// A short name (logs, metrics, [`ClaimSet::issuer`]).
    pub name: String,
    /// The `iss` its tokens carry (exactly).
    pub issuer: String,
    /// Its JWKS URL.
    pub jwks_url: String,
    /// Accepted audiences: one of them must be in a token's `aud`.
    pub audiences: Vec<String>,
    /// Accepted signing algorithms; empty: every asymmetric one its keys
    /// are for.
    pub algorithms: Vec<Algorithm>,
    /// The claim the scopes are in (a space-separated string, as OAuth
    /// says, or an array of strings, as some providers do).
    pub scope_claim: String,
    /// The claim the rate-limit tier is in (absent: `standard`).
    pub tier_claim: String,
}

impl IssuerConfig {
    /// An issuer named `name` with the usual claims (`scope`, `tier`) and
    /// every asymmetric algorithm.
    pub fn new(
        name: impl Into<String>,
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        IssuerConfig {
            name: name.into(),
            issuer: issuer.into(),
            jwks_url: jwks_url.into(),
            audiences: vec![audience.into()],
            algorithms: Vec::new(),
            scope_claim: "scope".to_owned(),
            tier_claim: "tier".to_owned(),
        }
    }
}

/// The trusted issuers and how tokens are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Trusted issuers, selected by a token's `iss` (distinct `iss` each).
    pub issuers: Vec<IssuerConfig>,
    /// How often each JWKS is refetched in the background.
    pub refresh_every: Duration,
    /// The shortest interval between two refetches caused by unknown kids.
    pub min_refetch: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Bytes the memory of verified tokens may hold (keyed by a SHA-256 of
    /// the token, so a token's size costs nothing there).
    pub remembered_bytes: u64,
    /// The policy of the JWKS fetches (timeout, breaker, bulkhead).
    pub fetch: UpstreamPolicy,
    /// The protection space named in challenges (`WWW-Authenticate:
    /// Bearer realm="…"`): the BFF's audience.
    pub realm: String,
}

impl AuthConfig {
    /// One issuer (`default`) with sound defaults.
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self::with_issuers(vec![IssuerConfig::new(
            "default", jwks_url, issuer, audience,
        )])
    }

    /// Several issuers with sound defaults.
    pub fn with_issuers(issuers: Vec<IssuerConfig>) -> Self {
        let realm = issuers
            .first()
            .and_then(|i| i.audiences.first())
            .cloned()
            .unwrap_or_else(|| "api".to_owned());
        AuthConfig {
            realm,
            issuers,
            refresh_every: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
            leeway: Duration::from_secs(30),
            remembered_bytes: 16 * 1024 * 1024,
            fetch: UpstreamPolicy {
                timeout: Duration::from_secs(5),
                ..UpstreamPolicy::default()
            },
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
    /// The token is malformed or its header names no `kid`.
    #[error("malformed token: {0}")]
    Header(String),
    /// The `iss` is none of the trusted issuers.
    #[error("untrusted issuer {0:?}")]
    UnknownIssuer(String),
    /// The algorithm is not one the issuer is trusted with.
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
    /// A claim is not what it must be (`sub` not a string, scopes not
    /// strings, an unknown tier).
    #[error("claim {0}")]
    Claim(String),
}

impl AuthError {
    /// Why, as a metrics label (a fixed set).
    pub fn reason(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self {
            AuthError::NoKeys => "no_keys",
            AuthError::Header(_) => "malformed",
            AuthError::UnknownIssuer(_) => "issuer",
            AuthError::Algorithm(_) | AuthError::AlgorithmMismatch { .. } => "algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::Claim(_) => "claim",
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
            AuthError::UnknownIssuer(_) => "the token's issuer is not trusted here",
            AuthError::Algorithm(_) | AuthError::AlgorithmMismatch { .. } => {
                "the token's signing algorithm is not accepted"
            }
            AuthError::UnknownKey(_) => "the token is signed by an unknown key",
            AuthError::Claim(_) => "a claim of the token is invalid",
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

/// One trusted issuer: its configuration and its keys.
struct Issuer {
    config: IssuerConfig,
    name: Arc<str>,
    jwks: RestClient,
    state: RwLock<KeyState>,
    refetch: tokio::sync::Mutex<()>,
}

/// A token already verified: its claims and the times that bound its use.
#[derive(Clone)]
struct Verified {
    claims: Claims,
    issuer: Arc<Issuer>,
    kid: Arc<str>,
    exp: i64,
    nbf: Option<i64>,
}

/// What one remembered token weighs: its entry, the claims it shares, and
/// the cache's own bookkeeping (an estimate, the same for every entry of a
/// size).
fn weight(v: &Verified) -> u32 {
    let claims = std::mem::size_of::<ClaimSet>()
        + v.claims.sub.len()
        + v.claims
            .scopes
            .iter()
            .map(|s| s.len() + std::mem::size_of::<String>())
            .sum::<usize>();
    let entry = 32 + std::mem::size_of::<Verified>() + v.kid.len() + 96;
    u32::try_from(claims + entry).unwrap_or(u32::MAX)
}

/// Verifies tokens; owns the JWKS caches and their background refresh.
///
/// The token's `iss` (read before anything else, and before any key is
/// looked up) selects one of the trusted issuers; its keys, chosen by the
/// token's `kid`, and its rules (audiences, algorithms, claim names) decide.
///
/// A client sends the same token on every request until it expires, and the
/// signature check (RSA or ECDSA) is the single largest CPU cost of a
/// request; so a token that verified is remembered until its `exp`, keyed
/// by a SHA-256 of the token and weighed in bytes under a ceiling, so that
/// many (or large) valid tokens cannot grow the memory past it. Time bounds
/// are re-checked on every hit, and the memory is dropped whenever a key
/// set changes, so a rotated-out key stops accepting tokens just as it
/// would without the memory.
pub struct Authenticator {
    config: AuthConfig,
    issuers: HashMap<String, Arc<Issuer>>,
    verified: moka::sync::Cache<[u8; 32], Verified>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("ready", &self.is_ready())
            .finish()
    }
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

/// The `iss` of a token, read without trusting anything else in it.
fn peek_issuer(token: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| AuthError::Header("not three parts".to_owned()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Header("the payload is not base64url".to_owned()))?;
    let claims: Iss = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Header("the payload is not a JSON object".to_owned()))?;
    claims
        .iss
        .ok_or_else(|| AuthError::Header("no iss".to_owned()))
}

impl Issuer {
    fn lookup(&self, kid: &str) -> Result<Option<VerifyKey>, AuthError> {
        let state = self.state.read();
        if !state.loaded {
            return Err(AuthError::NoKeys);
        }
        Ok(state.keys.get(kid).cloned())
    }

    fn is_loaded(&self) -> bool {
        self.state.read().loaded
    }

    fn key_count(&self) -> usize {
        self.state.read().keys.len()
    }

    /// Fetches the JWKS (through the resilient client: timeout, breaker,
    /// metrics as upstream `jwks`) and replaces the keys; on failure the
    /// old keys stay. Returns the key count and whether the set changed.
    async fn refresh(&self) -> Result<(usize, bool), String> {
        self.state.write().last_fetch = Some(Instant::now());
        let set: JwkSet = self
            .jwks
            .get_json_within::<_, MAX_JWKS_BYTES>("jwks", &CallContext::detached(), &[])
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        let keys = parse_jwks(&set);
        if keys.is_empty() {
            return Err("JWKS has no usable signing key".to_owned());
        }
        let count = keys.len();
        let mut state = self.state.write();
        let same =
            state.keys.len() == keys.len() && keys.keys().all(|k| state.keys.contains_key(k));
        state.keys = Arc::new(keys);
        state.loaded = true;
        Ok((count, !same))
    }
}

impl Authenticator {
    /// Creates the authenticator and starts the background refresh of
    /// every issuer's keys (the first fetch happens at once; until it
    /// succeeds, that issuer's tokens are refused and readiness reports no
    /// keys).
    ///
    /// # Panics
    /// When an issuer's JWKS URL is not a URL (configuration is checked
    /// before this is called).
    pub fn start(config: AuthConfig, http: HttpClient) -> Arc<Self> {
        let auth = Arc::new(Self::build(config, http));
        for issuer in auth.issuers.values() {
            tokio::spawn(refresh_loop(Arc::downgrade(&auth), issuer.clone()));
        }
        auth
    }

    /// An authenticator whose issuers' keys are given rather than fetched
    /// (no background refresh; an unknown kid still triggers one fetch per
    /// `min_refetch`): for property tests and fuzzing, where no provider
    /// runs. `keys` pairs an `iss` with its JWKS document.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn with_keys(config: AuthConfig, http: HttpClient, keys: &[(&str, &JwkSet)]) -> Self {
        let auth = Self::build(config, http);
        for (iss, set) in keys {
            if let Some(issuer) = auth.issuers.get(*iss) {
                let mut state = issuer.state.write();
                state.keys = Arc::new(parse_jwks(set));
                state.loaded = true;
                state.last_fetch = Some(Instant::now());
            }
        }
        auth
    }

    fn build(config: AuthConfig, http: HttpClient) -> Self {
        let mut issuers = HashMap::new();
        for issuer in &config.issuers {
            let url = match reqwest::Url::parse(&issuer.jwks_url) {
                Ok(url) => url,
                Err(e) => panic!("JWKS URL {:?} of {}: {e}", issuer.jwks_url, issuer.name),
            };
            let upstream = Upstream::new(
                "jwks",
                Protocol::Rest,
                config.fetch,
                HttpTransport::new("jwks", http.clone()),
            );
            issuers.insert(
                issuer.issuer.clone(),
                Arc::new(Issuer {
                    name: Arc::from(issuer.name.as_str()),
                    config: issuer.clone(),
                    jwks: RestClient::new(upstream, url),
                    state: RwLock::new(KeyState {
                        keys: Arc::new(HashMap::new()),
                        loaded: false,
                        last_fetch: None,
                    }),
                    refetch: tokio::sync::Mutex::new(()),
                }),
            );
        }
        Authenticator {
            verified: moka::sync::Cache::builder()
                .max_capacity(config.remembered_bytes)
                .weigher(|_, v: &Verified| weight(v))
                .time_to_live(Duration::from_secs(900))
                .build(),
            config,
            issuers,
        }
    }

    /// The realm of this API's challenges.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Whether every issuer's signing keys have been loaded.
    pub fn is_ready(&self) -> bool {
        self.issuers.values().all(|i| i.is_loaded())
    }

    /// How many keys are in use, over all issuers.
    pub fn key_count(&self) -> usize {
        self.issuers.values().map(|i| i.key_count()).sum()
    }

    /// Bytes held by the memory of verified tokens (after pending
    /// evictions are applied).
    pub fn remembered_bytes(&self) -> u64 {
        self.verified.run_pending_tasks();
        self.verified.weighted_size()
    }

    /// Fetches every issuer's JWKS now; on failure an issuer's old keys
    /// stay. Returns the number of keys in use.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut errors = Vec::new();
        for issuer in self.issuers.values() {
            if let Err(e) = self.refresh_issuer(issuer).await {
                errors.push(format!("{}: {e}", issuer.name));
            }
        }
        if errors.is_empty() {
            Ok(self.key_count())
        } else {
            Err(errors.join("; "))
        }
    }

    async fn refresh_issuer(&self, issuer: &Issuer) -> Result<usize, String> {
        let (count, changed) = issuer.refresh().await?;
        if changed {
            // A key may have gone: nothing verified with the old set counts.
            self.verified.invalidate_all();
        }
        Ok(count)
    }

    /// Refetches for an unknown kid, at most once per `min_refetch` per
    /// issuer.
    async fn refetch_for(
        &self,
        issuer: &Issuer,
        kid: &str,
    ) -> Result<Option<VerifyKey>, AuthError> {
        let _one_at_a_time = issuer.refetch.lock().await;
        if let Some(found) = issuer.lookup(kid)? {
            return Ok(Some(found));
        }
        let recent = issuer
            .state
            .read()
            .last_fetch
            .is_some_and(|t| t.elapsed() < self.config.min_refetch);
        if !recent && let Err(error) = self.refresh_issuer(issuer).await {
            tracing::warn!(issuer = %issuer.name, %error, "JWKS refetch for an unknown kid failed");
        }
        issuer.lookup(kid)
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.verified.get(&digest) {
            let now = now_unix();
            let leeway = self.config.leeway.as_secs() as i64;
            let in_time = now <= hit.exp + leeway && hit.nbf.is_none_or(|nbf| nbf - leeway <= now);
            if in_time && hit.issuer.lookup(&hit.kid)?.is_some() {
                return Ok(hit.claims);
            }
            self.verified.invalidate(&digest);
        }
        let iss = peek_issuer(token)?;
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or(AuthError::UnknownIssuer(iss))?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Header(e.to_string()))?;
        let allowed = &issuer.config.algorithms;
        if !is_asymmetric(&header.alg) || !(allowed.is_empty() || allowed.contains(&header.alg)) {
            return Err(AuthError::Algorithm(header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Header("no kid".to_owned()))?;
        let key = match issuer.lookup(&kid)? {
            Some(key) => key,
            None => self
                .refetch_for(issuer, &kid)
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
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&issuer.config.audiences);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.required_spec_claims =
            HashSet::from(["exp", "iss", "aud", "sub"].map(String::from));
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)?;
        let raw = data.claims;
        let claims = Claims::new(read_claims(&raw, &issuer.config, &issuer.name)?);
        let verified = Verified {
            exp: claims.expires_at,
            nbf: raw.get("nbf").and_then(Value::as_i64),
            claims: claims.clone(),
            issuer: issuer.clone(),
            kid: Arc::from(kid.as_str()),
        };
        self.verified.insert(digest, verified);
        Ok(claims)
    }
}

/// The claims a BFF uses, by the issuer's claim names.
fn read_claims(
    raw: &serde_json::Map<String, Value>,
    config: &IssuerConfig,
    name: &Arc<str>,
) -> Result<ClaimSet, AuthError> {
    let sub = raw
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::Claim("sub is not a string".to_owned()))?
        .to_owned();
    let expires_at = raw
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| AuthError::Claim("exp is not a number".to_owned()))?;
    let scopes = match raw.get(&config.scope_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                AuthError::Claim(format!("{} holds a non-string", config.scope_claim))
            })?,
        Some(_) => {
            return Err(AuthError::Claim(format!(
                "{} is neither a string nor a list",
                config.scope_claim
            )));
        }
    };
    let tier = match raw.get(&config.tier_claim) {
        None | Some(Value::Null) => Tier::Standard,
        Some(Value::String(t)) => {
            Tier::parse(t).ok_or_else(|| AuthError::Claim(format!("unknown tier {t:?}")))?
        }
        Some(_) => {
            return Err(AuthError::Claim(format!(
                "{} is not a string",
                config.tier_claim
            )));
        }
    };
    Ok(ClaimSet {
        sub,
        scopes,
        tier,
        expires_at,
        issuer: name.clone(),
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Keeps one issuer's keys fresh while the authenticator lives: quickly
/// retried until the first success, then every `refresh_every`.
async fn refresh_loop(auth: Weak<Authenticator>, issuer: Arc<Issuer>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(strong) = auth.upgrade() else { return };
        let wait = match strong.refresh_issuer(&issuer).await {
            Ok(count) => {
                tracing::debug!(issuer = %issuer.name, count, "JWKS refreshed");
                backoff = Duration::from_millis(200);
                strong.config.refresh_every
            }
            Err(error) => {
                tracing::warn!(issuer = %issuer.name, %error, keys_in_use = issuer.key_count(), "JWKS refresh failed; keeping the last good keys");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                backoff.min(strong.config.refresh_every)
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}
