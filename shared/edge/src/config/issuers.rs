//! The sections of the configuration that are lists: the extra token
//! issuers (`BFF_ISSUERS`) and the fragment kinds' windows
//! (`BFF_CACHE_{KIND}_…`, checked against the kinds the BFF declares).

use super::source::Source;
use super::{BffSpec, ConfigError};

/// The issuers named in `BFF_ISSUERS` (comma-separated), each from
/// `BFF_ISSUER_{NAME}_ISS` and `_JWKS_URL` (required), `_AUDIENCES`
/// (comma-separated; default: the BFF's audience), `_ALGORITHMS`
/// (default: every asymmetric one), `_SCOPE_CLAIM` (`scope`) and
/// `_TIER_CLAIM` (`tier`).
pub(super) fn issuers(
    s: &mut Source,
    default_iss: &str,
    audience: &str,
) -> Result<Vec<bff_auth::IssuerConfig>, ConfigError> {
    let Some(names) = s.take("BFF_ISSUERS") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<bff_auth::IssuerConfig> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name.eq_ignore_ascii_case("default") {
            return Err(ConfigError::new(
                "BFF_ISSUERS",
                format!(
                    "{name:?} is not an issuer name (letters, digits and _, at most 32, not \"default\")"
                ),
            ));
        }
        let key = |suffix: &str| format!("BFF_ISSUER_{}_{suffix}", name.to_uppercase());
        let iss = s
            .take(&key("ISS"))
            .ok_or_else(|| ConfigError::new(&key("ISS"), "required: the iss its tokens carry"))?;
        if iss == default_iss || out.iter().any(|i| i.issuer == iss) {
            return Err(ConfigError::new(
                &key("ISS"),
                format!("{iss:?} is already trusted: each issuer needs its own iss"),
            ));
        }
        if !s.values.contains_key(&key("JWKS_URL")) {
            return Err(ConfigError::new(&key("JWKS_URL"), "required: its JWKS URL"));
        }
        let jwks_url = s.url(&key("JWKS_URL"), "")?;
        let list = |raw: Option<String>| -> Vec<String> {
            raw.map(|r| {
                r.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
        };
        let mut audiences = list(s.take(&key("AUDIENCES")));
        if audiences.is_empty() {
            audiences.push(audience.to_owned());
        }
        let mut algorithms = Vec::new();
        for alg in list(s.take(&key("ALGORITHMS"))) {
            match alg.parse::<jsonwebtoken::Algorithm>() {
                Ok(a)
                    if !matches!(
                        a,
                        jsonwebtoken::Algorithm::HS256
                            | jsonwebtoken::Algorithm::HS384
                            | jsonwebtoken::Algorithm::HS512
                    ) =>
                {
                    algorithms.push(a);
                }
                _ => {
                    return Err(ConfigError::new(
                        &key("ALGORITHMS"),
                        format!(
                            "{alg:?} is not an asymmetric JWS algorithm (RS256, PS256, ES256, EdDSA, …)"
                        ),
                    ));
                }
            }
        }
        out.push(bff_auth::IssuerConfig {
            name: name.to_owned(),
            issuer: iss,
            jwks_url: jwks_url.to_string(),
            audiences,
            algorithms,
            scope_claim: s
                .take(&key("SCOPE_CLAIM"))
                .unwrap_or_else(|| "scope".to_owned()),
            tier_claim: s
                .take(&key("TIER_CLAIM"))
                .unwrap_or_else(|| "tier".to_owned()),
        });
    }
    Ok(out)
}

/// The windows a fragment kind's policy may be given (`BFF_CACHE_{KIND}_…`).
const FRAGMENT_WINDOWS: [&str; 3] = ["FRESH", "REVALIDATE", "STALE"];

/// A window set for a kind this BFF does not declare is an error naming the
/// key (a typo must not leave a fragment uncached or cached for ever), and so
/// is a kind declared twice.
pub(super) fn unknown_fragment_kinds(s: &Source, spec: BffSpec) -> Result<(), ConfigError> {
    let declared: Vec<&str> = spec.fragments.iter().map(|p| p.kind).collect();
    for (i, kind) in declared.iter().enumerate() {
        if declared[..i].contains(kind) {
            return Err(ConfigError::new(
                &format!("BFF_CACHE_{}", kind.to_uppercase()),
                format!(
                    "the fragment kind {kind:?} is declared twice by {}",
                    spec.name
                ),
            ));
        }
    }
    let unknown = s.values.keys().filter_map(|key| {
        let rest = key.strip_prefix("BFF_CACHE_")?;
        FRAGMENT_WINDOWS
            .iter()
            .find_map(|w| rest.strip_suffix(w)?.strip_suffix('_'))
            .map(|kind| (key, kind))
    });
    if let Some((key, kind)) = unknown.min() {
        let known = if declared.is_empty() {
            "none".to_owned()
        } else {
            declared.join(", ")
        };
        return Err(ConfigError::new(
            key,
            format!(
                "{} caches no fragment kind {:?} (its kinds: {known})",
                spec.name,
                kind.to_lowercase()
            ),
        ));
    }
    Ok(())
}
