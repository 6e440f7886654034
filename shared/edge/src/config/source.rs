//! The merged keys of the file and the environment, and the parsers that
//! take a key's value out with its checks (a bad value names its key).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bff_upstream::UpstreamPolicy;
use reqwest::Url;

use super::{ConfigError, PASSTHROUGH, is_config_env};

#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    File,
    Env,
}

/// The merged key/value pairs of file and environment.
#[derive(Debug, Default)]
pub(super) struct Source {
    pub(super) values: BTreeMap<String, (String, Origin)>,
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
                    &name,
                    format!("in {file}: arrays and dates are not accepted here"),
                ));
            }
        };
        out.push((name, text));
    }
    Ok(())
}

fn env_name(key: &str) -> String {
    let upper = key.replace(['-', '.'], "_").to_uppercase();
    if upper.starts_with("BFF_") || PASSTHROUGH.contains(&upper.as_str()) {
        upper
    } else {
        format!("BFF_{upper}")
    }
}

impl Source {
    pub(super) fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut source = Source::default();
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
                source.values.insert(env_name(&key), (value, Origin::File));
            }
        }
        for (key, value) in env {
            if is_config_env(&key) {
                source.values.insert(key, (value, Origin::Env));
            }
        }
        Ok(source)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<String> {
        self.values
            .remove(key)
            .map(|(v, _)| v)
            .filter(|v| !v.trim().is_empty())
    }

    pub(super) fn parse<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some(raw) => {
                parse(raw.trim()).map_err(|m| ConfigError::new(key, format!("{m} (got {raw:?})")))
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.parse(key, default, |raw| {
            let d = humantime::parse_duration(raw)
                .map_err(|_| "expected a duration such as 500ms, 2s or 1m".to_owned())?;
            if d.is_zero() {
                Err("must be more than zero".to_owned())
            } else {
                Ok(d)
            }
        })
    }

    pub(super) fn duration_or_zero(
        &mut self,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.parse(key, default, |raw| {
            humantime::parse_duration(raw)
                .map_err(|_| "expected a duration such as 0s, 500ms, 2s or 1m".to_owned())
        })
    }

    pub(super) fn count(&mut self, key: &str, default: usize) -> Result<usize, ConfigError> {
        self.parse(key, default, |raw| match raw.parse::<usize>() {
            Ok(0) | Err(_) => Err("expected a whole number greater than zero".to_owned()),
            Ok(n) if n > 10_000_000 => Err("expected at most 10000000".to_owned()),
            Ok(n) => Ok(n),
        })
    }

    pub(super) fn positive(&mut self, key: &str, default: u64) -> Result<u64, ConfigError> {
        self.parse(key, default, |raw| match raw.parse::<u64>() {
            Ok(0) | Err(_) => Err("expected a whole number greater than zero".to_owned()),
            Ok(n) => Ok(n),
        })
    }

    pub(super) fn whole(&mut self, key: &str, default: u64, max: u64) -> Result<u64, ConfigError> {
        self.parse(key, default, |raw| match raw.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("expected a whole number from 0 to {max}")),
        })
    }

    pub(super) fn percent(&mut self, key: &str, default: u8, min: u8) -> Result<u8, ConfigError> {
        self.parse(key, default, |raw| match raw.parse::<u8>() {
            Ok(n) if (min..=100).contains(&n) => Ok(n),
            _ => Err(format!("expected a percentage from {min} to 100")),
        })
    }

    pub(super) fn flag(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse(key, default, |raw| match raw {
            "true" | "1" | "on" => Ok(true),
            "false" | "0" | "off" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    pub(super) fn small(&mut self, key: &str, default: u32) -> Result<u32, ConfigError> {
        let n = self.positive(key, u64::from(default))?;
        u32::try_from(n).map_err(|_| ConfigError::new(key, "too large"))
    }

    /// The policy keys under `prefix` (`BFF_UPSTREAM_ALL`, `BFF_UPSTREAM_USER`),
    /// each defaulting to `base`.
    pub(super) fn policy(
        &mut self,
        prefix: &str,
        base: UpstreamPolicy,
    ) -> Result<UpstreamPolicy, ConfigError> {
        let key = |suffix: &str| format!("{prefix}_{suffix}");
        let mut p = base;
        p.timeout = self.duration(&key("TIMEOUT"), base.timeout)?;
        p.min_budget = self.duration(&key("MIN_BUDGET"), base.min_budget)?;
        p.max_concurrency =
            self.positive(&key("MAX_CONCURRENCY"), base.max_concurrency as u64)? as usize;
        p.critical_reserve = self.percent(&key("CRITICAL_RESERVE"), base.critical_reserve, 0)?;
        p.breaker.window = self.small(&key("BREAKER_WINDOW"), base.breaker.window)?;
        p.breaker.minimum_calls =
            self.small(&key("BREAKER_MIN_CALLS"), base.breaker.minimum_calls)?;
        p.breaker.failure_rate =
            self.percent(&key("FAILURE_RATE"), base.breaker.failure_rate, 1)?;
        p.breaker.slow_call = self.duration(&key("SLOW_CALL"), base.breaker.slow_call)?;
        p.breaker.slow_rate = self.percent(&key("SLOW_RATE"), base.breaker.slow_rate, 1)?;
        p.breaker.open_for = self.duration(&key("OPEN_FOR"), base.breaker.open_for)?;
        p.breaker.half_open_calls =
            self.small(&key("HALF_OPEN_CALLS"), base.breaker.half_open_calls)?;
        if p.breaker.minimum_calls > p.breaker.window {
            return Err(ConfigError::new(
                &key("BREAKER_MIN_CALLS"),
                format!(
                    "must be at most the window ({} calls), got {}",
                    p.breaker.window, p.breaker.minimum_calls
                ),
            ));
        }
        p.retry.max_retries =
            self.whole(&key("RETRIES"), u64::from(base.retry.max_retries), 10)? as u32;
        p.retry.backoff = self.duration(&key("RETRY_BACKOFF"), base.retry.backoff)?;
        p.retry.budget_ratio = f32::from(self.percent(
            &key("RETRY_BUDGET"),
            (base.retry.budget_ratio * 100.0).round() as u8,
            0,
        )?) / 100.0;
        p.retry.min_per_sec = self.whole(
            &key("RETRY_MIN_PER_SEC"),
            u64::from(base.retry.min_per_sec),
            1_000_000,
        )? as u32;
        p.coalesce = self.flag(&key("COALESCE"), base.coalesce)?;
        let hedge = self.whole(
            &key("HEDGE_PERCENTILE"),
            u64::from(base.hedge_percentile.unwrap_or(0)),
            99,
        )?;
        p.hedge_percentile = (hedge > 0).then_some(hedge as u8);
        Ok(p)
    }

    pub(super) fn url(&mut self, key: &str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.take(key).unwrap_or_else(|| default.to_owned());
        let url = Url::parse(raw.trim())
            .map_err(|e| ConfigError::new(key, format!("not a URL: {e} (got {raw:?})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(
                key,
                format!("expected an http:// or https:// URL (got {raw:?})"),
            ));
        }
        Ok(url)
    }

    pub(super) fn leftovers(self) -> (Vec<String>, Vec<String>) {
        let (mut file, mut env) = (Vec::new(), Vec::new());
        for (key, (_, origin)) in self.values {
            match origin {
                Origin::File => file.push(key),
                Origin::Env => env.push(key),
            }
        }
        (file, env)
    }
}
