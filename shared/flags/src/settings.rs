//! The flags' configuration, owned here: a split per declared flag
//! (`BFF_FLAG_{KEY}`), a file of splits (`BFF_FLAGS_FILE`) and how often the
//! file and Redis are read again (`BFF_FLAGS_REFRESH`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bff_config::{ConfigError, FieldError, Section, Sources, de};

use crate::{Flag, Split};

/// How often the file and Redis are read again unless
/// `BFF_FLAGS_REFRESH` says otherwise: a change applies everywhere within
/// about a second, for one small Redis read per replica per second.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FlagsSection {
    #[serde(deserialize_with = "de::some_text")]
    file: Option<String>,
    #[serde(deserialize_with = "de::duration")]
    refresh: Duration,
}

impl Default for FlagsSection {
    fn default() -> Self {
        FlagsSection {
            file: None,
            refresh: REFRESH,
        }
    }
}

impl Section for FlagsSection {
    fn check(&self) -> Result<(), FieldError> {
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.refresh) {
            return Err(FieldError::new("refresh", "must be from 100ms to 1h"));
        }
        Ok(())
    }
}

/// The flags of a BFF as configured at start-up.
#[derive(Debug, Clone)]
pub struct FlagsConfig {
    /// The flags the BFF declared.
    pub flags: &'static [Flag],
    /// Each flag's split from the environment (`BFF_FLAG_{KEY}`), by key.
    pub env: BTreeMap<&'static str, Split>,
    /// `BFF_FLAGS_FILE`: a JSON object of splits by flag key, read again
    /// when it changes (a mounted ConfigMap, say).
    pub file: Option<PathBuf>,
    /// Each flag's split from the file as read at start-up, by key.
    pub from_file: BTreeMap<&'static str, Split>,
    /// How often the file and Redis are read again.
    pub refresh: Duration,
}

/// The environment name of a flag's key: `BFF_FLAG_UNVERSIONED_VERSION`.
pub fn env_key(flag: &Flag) -> String {
    format!(
        "BFF_FLAG_{}",
        flag.key.replace(['-', '.'], "_").to_uppercase()
    )
}

impl FlagsConfig {
    /// Reads the flags' keys for the `flags` a BFF declares. A declared
    /// default that does not parse is an error too (at the flag's key), so
    /// a team's typo stops the BFF's tests rather than a rollout.
    pub fn configure(s: &mut Sources, flags: &'static [Flag]) -> Result<Self, ConfigError> {
        let section: FlagsSection = s.section("FLAGS")?;
        let mut env = BTreeMap::new();
        for flag in flags {
            let key = env_key(flag);
            Split::parse(flag, flag.default)
                .map_err(|e| ConfigError::new(&key, format!("the declared default: {e}")))?;
            if let Some(raw) = s.take(&key) {
                let split = Split::parse(flag, &raw).map_err(|e| ConfigError::new(&key, e))?;
                env.insert(flag.key, split);
            }
        }
        let file = section.file.map(PathBuf::from);
        let from_file = match &file {
            Some(path) => {
                read_file(path, flags).map_err(|e| ConfigError::new("BFF_FLAGS_FILE", e))?
            }
            None => BTreeMap::new(),
        };
        Ok(FlagsConfig {
            flags,
            env,
            file,
            from_file,
            refresh: section.refresh,
        })
    }
}

/// Reads a file of splits: `{"unversioned-version": "v1:80,v2:20"}`. A key
/// that names no declared flag is an error (a typo must not be ignored).
pub(crate) fn read_file(
    path: &Path,
    flags: &'static [Flag],
) -> Result<BTreeMap<&'static str, Split>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    parse_splits(&text, flags).map_err(|e| format!("{shown}: {e}"))
}

/// Splits by flag key from a JSON object of strings, against `flags`.
pub(crate) fn parse_splits(
    text: &str,
    flags: &'static [Flag],
) -> Result<BTreeMap<&'static str, Split>, String> {
    let raw: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        format!("expected a JSON object of splits such as {{\"flag\": \"a:90,b:10\"}}: {e}")
    })?;
    raw.iter()
        .map(|(key, value)| {
            let flag = flags.iter().find(|f| f.key == key).ok_or_else(|| {
                let known: Vec<&str> = flags.iter().map(|f| f.key).collect();
                format!(
                    "{key:?} is not a flag of this BFF (one of: {})",
                    known.join(", ")
                )
            })?;
            let split = Split::parse(flag, value).map_err(|e| format!("{key}: {e}"))?;
            Ok((flag.key, split))
        })
        .collect()
}
