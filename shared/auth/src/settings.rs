//! Token verification's configuration, owned here: the default issuer
//! (`BFF_JWKS_URL`, `BFF_ISSUER`, `BFF_AUDIENCE`, the JWKS refresh periods,
//! `BFF_AUTH_CACHE_BYTES`) and the issuers trusted besides it
//! (`BFF_ISSUERS=partners,staff` and the keys under
//! `BFF_ISSUER_{NAME}_`).

use std::time::Duration;

use bff_config::{ConfigError, FieldError, Section, Sources, de};
use jsonwebtoken::Algorithm;
use reqwest::Url;

use crate::jwks::IssuerConfig;

/// Token verification, configured.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The default issuer's JWKS.
    pub jwks_url: Url,
    /// The default issuer's `iss`.
    pub issuer: String,
    /// The audience a token must name (by default the BFF's name).
    pub audience: String,
    /// Background JWKS refresh period.
    pub jwks_refresh: Duration,
    /// Shortest interval between JWKS refetches for unknown key ids.
    pub jwks_min_refetch: Duration,
    /// Issuers trusted besides the default one.
    pub extra_issuers: Vec<IssuerConfig>,
    /// Bytes the memory of verified tokens may hold.
    pub cache_bytes: u64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AuthSection {
    #[serde(deserialize_with = "de::url")]
    jwks_url: Url,
    issuer: String,
    #[serde(deserialize_with = "de::some_text")]
    audience: Option<String>,
    #[serde(deserialize_with = "de::duration")]
    jwks_refresh: Duration,
    #[serde(deserialize_with = "de::duration")]
    jwks_min_refetch: Duration,
    #[serde(deserialize_with = "de::positive")]
    auth_cache_bytes: u64,
    #[serde(deserialize_with = "de::list")]
    issuers: Vec<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            jwks_url: Url::parse("http://127.0.0.1:7000/.well-known/jwks.json")
                .unwrap_or_else(|e| unreachable!("a constant URL: {e}")),
            issuer: "http://127.0.0.1:7000".to_owned(),
            audience: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            auth_cache_bytes: 16 * 1024 * 1024,
            issuers: Vec::new(),
        }
    }
}

impl Section for AuthSection {
    fn check(&self) -> Result<(), FieldError> {
        for name in &self.issuers {
            let valid =
                name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.eq_ignore_ascii_case("default") {
                return Err(FieldError::new(
                    "issuers",
                    format!(
                        "{name:?} is not an issuer name (letters, digits and _, at most 32, not \"default\")"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One more issuer: `_ISS` and `_JWKS_URL` are required; `_AUDIENCES`
/// defaults to the BFF's audience, `_ALGORITHMS` to every asymmetric one,
/// the claims to `scope` and `tier`.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct IssuerSection {
    #[serde(deserialize_with = "de::some_text")]
    iss: Option<String>,
    #[serde(deserialize_with = "de::some_url")]
    jwks_url: Option<Url>,
    #[serde(deserialize_with = "de::list")]
    audiences: Vec<String>,
    #[serde(deserialize_with = "algorithms")]
    algorithms: Vec<Algorithm>,
    scope_claim: String,
    tier_claim: String,
}

impl Default for IssuerSection {
    fn default() -> Self {
        IssuerSection {
            iss: None,
            jwks_url: None,
            audiences: Vec::new(),
            algorithms: Vec::new(),
            scope_claim: "scope".to_owned(),
            tier_claim: "tier".to_owned(),
        }
    }
}

impl Section for IssuerSection {}

/// Asymmetric JWS algorithms only: a shared secret has no place in a JWKS.
fn algorithms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
    de::text(d, |raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|alg| match alg.parse::<Algorithm>() {
                Ok(a) if !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    Ok(a)
                }
                _ => Err(format!(
                    "{alg:?} is not an asymmetric JWS algorithm (RS256, PS256, ES256, EdDSA, …)"
                )),
            })
            .collect()
    })
}

impl AuthSettings {
    /// Reads token verification for the BFF whose audience is by default
    /// `default_audience`.
    pub fn configure(s: &mut Sources, default_audience: &str) -> Result<Self, ConfigError> {
        let section: AuthSection = s.section("")?;
        let audience = section
            .audience
            .unwrap_or_else(|| default_audience.to_owned());
        let mut extra_issuers: Vec<IssuerConfig> = Vec::new();
        for name in &section.issuers {
            let prefix = format!("ISSUER_{}", name.to_uppercase());
            let issuer: IssuerSection = s.section(&prefix)?;
            let required = |field: &str, what: &str| {
                ConfigError::new(bff_config::key(&prefix, field), format!("required: {what}"))
            };
            let iss = issuer
                .iss
                .ok_or_else(|| required("iss", "the iss its tokens carry"))?;
            let jwks_url = issuer
                .jwks_url
                .ok_or_else(|| required("jwks_url", "its JWKS URL"))?;
            if iss == section.issuer || extra_issuers.iter().any(|i| i.issuer == iss) {
                return Err(ConfigError::new(
                    bff_config::key(&prefix, "iss"),
                    format!("{iss:?} is already trusted: each issuer needs its own iss"),
                ));
            }
            let mut audiences = issuer.audiences;
            if audiences.is_empty() {
                audiences.push(audience.clone());
            }
            extra_issuers.push(IssuerConfig {
                name: name.clone(),
                issuer: iss,
                jwks_url: jwks_url.to_string(),
                audiences,
                algorithms: issuer.algorithms,
                scope_claim: issuer.scope_claim,
                tier_claim: issuer.tier_claim,
            });
        }
        Ok(AuthSettings {
            jwks_url: section.jwks_url,
            issuer: section.issuer,
            audience,
            jwks_refresh: section.jwks_refresh,
            jwks_min_refetch: section.jwks_min_refetch,
            extra_issuers,
            cache_bytes: section.auth_cache_bytes,
        })
    }
}
