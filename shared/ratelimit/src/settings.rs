//! The rate limits' configuration, owned here: a quota per tier and for
//! anonymous callers (`BFF_RATE_LIMIT_{TIER}`, `600/60s`), and
//! `BFF_RATE_LIMITS=off` to turn limiting off.

use std::time::Duration;

use bff_config::{ConfigError, Section, Sources, de};

use crate::{Policy, Quota};

fn quota<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
    de::text(d, Quota::parse)
}

const fn per_minute(limit: u32) -> Quota {
    Quota {
        limit,
        window: Duration::from_secs(60),
    }
}

/// The quota of each policy. A token without a tier is `standard` (the
/// contract).
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct QuotaSection {
    #[serde(deserialize_with = "quota")]
    free: Quota,
    #[serde(deserialize_with = "quota")]
    standard: Quota,
    #[serde(deserialize_with = "quota")]
    premium: Quota,
    #[serde(deserialize_with = "quota")]
    anonymous: Quota,
}

impl Default for QuotaSection {
    fn default() -> Self {
        QuotaSection {
            free: per_minute(60),
            standard: per_minute(300),
            premium: per_minute(600),
            anonymous: per_minute(20),
        }
    }
}

impl Section for QuotaSection {}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SwitchSection {
    #[serde(deserialize_with = "de::on_off")]
    rate_limits: bool,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection { rate_limits: true }
    }
}

impl Section for SwitchSection {}

/// The policies by name (`free`, `standard`, `premium`, `anonymous`); none
/// when `BFF_RATE_LIMITS=off`.
pub fn configured_policies(s: &mut Sources) -> Result<Vec<Policy>, ConfigError> {
    let quotas: QuotaSection = s.section("RATE_LIMIT")?;
    let switch: SwitchSection = s.section("")?;
    if !switch.rate_limits {
        return Ok(Vec::new());
    }
    Ok([
        ("free", quotas.free),
        ("standard", quotas.standard),
        ("premium", quotas.premium),
        ("anonymous", quotas.anonymous),
    ]
    .into_iter()
    .map(|(name, quota)| Policy { name, quota })
    .collect())
}
