//! The keys of a TOML file and the environment under their environment
//! names, and the sections read from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use figment::Figment;
use figment::providers::Serialized;
use figment::value::{Dict, Value};

use crate::{ConfigError, FieldError, Section, fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    File,
    Env,
}

/// The configuration's keys, from a file and the environment (which wins),
/// each under its environment name; the sections and keys read so far are
/// remembered, so that what nobody read is reported ([`Sources::finish`]).
#[derive(Debug, Default)]
pub struct Sources {
    values: BTreeMap<String, (String, Origin)>,
    read: BTreeSet<String>,
}

/// The environment name of `field` in the section under `prefix`:
/// `key("LIVE", "heartbeat")` is `BFF_LIVE_HEARTBEAT`, `key("", "listen")`
/// is `BFF_LISTEN`.
pub fn key(prefix: &str, field: &str) -> String {
    let field = field.to_uppercase();
    if prefix.is_empty() {
        format!("BFF_{field}")
    } else {
        format!("BFF_{prefix}_{field}")
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
    file: &str,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}_{key}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(&name, inner, out, file)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::new(
                    name,
                    format!("in {file}: arrays and dates are not accepted here"),
                ));
            }
        };
        out.push((name, text));
    }
    Ok(())
}

impl Sources {
    /// Reads `file` (if any) and then `env`. Of the environment, only
    /// `BFF_*`, the `passthrough` names and the `env_only` names are
    /// configuration; a file's keys become `BFF_*` names unless they are
    /// `passthrough` names (`redis_url` is `REDIS_URL`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        passthrough: &[&str],
        env_only: &[&str],
    ) -> Result<Self, ConfigError> {
        let mut sources = Sources::default();
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--config", format!("cannot read {shown}: {e}")))?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| {
                ConfigError::new("--config", format!("{shown} is not valid TOML: {e}"))
            })?;
            let mut pairs = Vec::new();
            flatten("", &table, &mut pairs, &shown)?;
            for (key, value) in pairs {
                let upper = key.replace(['-', '.'], "_").to_uppercase();
                let name = if upper.starts_with("BFF_") || passthrough.contains(&upper.as_str()) {
                    upper
                } else {
                    format!("BFF_{upper}")
                };
                sources.values.insert(name, (value, Origin::File));
            }
        }
        for (key, value) in env {
            let wanted = key.starts_with("BFF_")
                || passthrough.contains(&key.as_str())
                || env_only.contains(&key.as_str());
            if wanted {
                sources.values.insert(key, (value, Origin::Env));
            }
        }
        Ok(sources)
    }

    /// The value of `key`, unless blank (a blank value is no value); the
    /// key counts as read either way.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.read.insert(key.to_owned());
        self.values
            .get(key)
            .map(|(v, _)| v.clone())
            .filter(|v| !v.trim().is_empty())
    }

    /// Every key given, read or not, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The section `T` under `prefix` (`""` for keys such as `BFF_LISTEN`).
    pub fn section<T: Section>(&mut self, prefix: &str) -> Result<T, ConfigError> {
        self.layered(&[prefix])
    }

    /// The section `T` read from several prefixes, a later one winning key
    /// by key: `["UPSTREAM_ALL", "UPSTREAM_USER"]` is what every upstream
    /// is given, overridden by what the user service is given.
    pub fn layered<T: Section>(&mut self, prefixes: &[&str]) -> Result<T, ConfigError> {
        // Which key gave each field, for naming it in an error.
        let mut given: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
        let mut figment = Figment::new();
        for prefix in prefixes {
            let mut dict = Dict::new();
            for field in fields::of::<T>() {
                let key = key(prefix, field);
                if let Some(raw) = self.take(&key) {
                    dict.insert((*field).to_owned(), Value::from(raw.trim().to_owned()));
                    given.insert(field, (key, raw));
                }
            }
            figment = figment.merge(Serialized::defaults(dict));
        }
        let named = |field: &str| -> String {
            given
                .get(field)
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| key(prefixes.last().copied().unwrap_or(""), field))
        };
        let section: T = figment.extract().map_err(|error| {
            let field = error
                .path
                .first()
                .cloned()
                .or_else(|| match &error.kind {
                    figment::error::Kind::MissingField(f) => Some(f.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            let message = match &error.kind {
                figment::error::Kind::Message(m) => m.clone(),
                other => other.to_string(),
            };
            match given.get(field.as_str()) {
                Some((key, raw)) => ConfigError::new(key, format!("{message} (got {raw:?})")),
                None => ConfigError::new(named(&field), message),
            }
        })?;
        section
            .check()
            .map_err(|FieldError { field, message }| ConfigError::new(named(field), message))?;
        Ok(section)
    }

    /// The end of reading: a key of the file that no section read is an
    /// error (a typo must not be ignored); one of the environment is a
    /// warning (orchestrators inject variables of their own), returned.
    pub fn finish(self) -> Result<Vec<String>, ConfigError> {
        let (values, read) = (&self.values, &self.read);
        let unread = |origin: Origin| {
            values
                .iter()
                .filter(move |(key, (_, o))| *o == origin && !read.contains(*key))
                .map(|(key, _)| key.clone())
        };
        if let Some(key) = unread(Origin::File).next() {
            return Err(ConfigError::new(
                key,
                "unknown key in the configuration file",
            ));
        }
        Ok(unread(Origin::Env)
            .map(|k| format!("unknown variable {k} ignored"))
            .collect())
    }
}

#[cfg(test)]
mod tests;
