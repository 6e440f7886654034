//! Typed configuration of a BFF binary.
//!
//! Sources, later winning: built-in defaults, an optional TOML file
//! (`--config FILE`), the environment. The file may use the environment's
//! names (`BFF_LISTEN = "…"`) or lower-case ones without the prefix, nested
//! or not (`listen`, `[upstream.user] timeout = "300ms"` is
//! `BFF_UPSTREAM_USER_TIMEOUT`). Every value is parsed and checked once, here;
//! a bad one is a [`ConfigError`] naming the key. An unknown key in the file
//! is an error (a typo must not be ignored); an unknown `BFF_*` variable in
//! the environment is only a warning, since orchestrators inject variables
//! of their own.
//!
//! Environment variables are read through the `env` argument, never with
//! `std::env::var` in code paths, so tests pass their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bff_telemetry::LogFormat;
use bff_upstream::{BreakerConfig, UpstreamPolicy};
use reqwest::Url;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, as the environment spells it (or the file path).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// What distinguishes one BFF binary from another at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BffSpec {
    /// Binary name, default audience and service name (`bff-mobile`).
    pub name: &'static str,
    /// Default port (8081, 8082, 8083).
    pub default_port: u16,
}

/// The upstream services, by the names used in keys and metrics.
pub const UPSTREAMS: [&str; 7] = [
    "user",
    "order",
    "recommendation",
    "review",
    "product",
    "inventory",
    "pricing",
];

const PASSTHROUGH: [&str; 4] = [
    "REDIS_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "RUST_LOG",
];

/// Section deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole request.
    pub request: Duration,
    /// Critical sections.
    pub critical: Duration,
    /// Optional sections.
    pub optional: Duration,
}

/// Everything a BFF binary is configured with.
#[derive(Debug, Clone)]
pub struct BffConfig {
    /// Binary name.
    pub name: &'static str,
    /// Listen address.
    pub listen: SocketAddr,
    /// JWKS location.
    pub jwks_url: Url,
    /// Required `iss`.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Background JWKS refresh period.
    pub jwks_refresh: Duration,
    /// Base URL (REST), endpoint (GraphQL) or channel URL (gRPC) per upstream.
    pub upstream_urls: BTreeMap<&'static str, Url>,
    /// Call policy per upstream.
    pub policies: BTreeMap<&'static str, UpstreamPolicy>,
    /// Connect timeout of the shared HTTP pool and the gRPC channels.
    pub connect_timeout: Duration,
    /// Section deadlines.
    pub deadlines: Deadlines,
    /// How long a cached fragment may stand in for a failed section.
    pub cache_stale_for: Duration,
    /// Fragments kept at most.
    pub cache_max_entries: u64,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// `RUST_LOG` filter.
    pub log_filter: String,
    /// `REDIS_URL` (the shared tier is not in this build: logged at start).
    pub redis_url: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (export is not in this build: logged at start).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// Things worth a warning once logging is up (unknown variables, …).
    pub warnings: Vec<String>,
}

fn default_url(name: &str) -> &'static str {
    match name {
        "user" => "http://127.0.0.1:7001",
        "order" => "http://127.0.0.1:7002",
        "recommendation" => "http://127.0.0.1:7003",
        "product" => "http://127.0.0.1:7004",
        "pricing" => "http://127.0.0.1:7005/graphql",
        "review" => "http://127.0.0.1:7006",
        _ => "http://127.0.0.1:7007",
    }
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    File,
    Env,
}

/// The merged key/value pairs of file and environment.
#[derive(Debug, Default)]
struct Source {
    values: BTreeMap<String, (String, Origin)>,
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
    fn load(
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
            if key.starts_with("BFF_") || PASSTHROUGH.contains(&key.as_str()) {
                source.values.insert(key, (value, Origin::Env));
            }
        }
        Ok(source)
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.values
            .remove(key)
            .map(|(v, _)| v)
            .filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
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

    fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
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

    fn positive(&mut self, key: &str, default: u64) -> Result<u64, ConfigError> {
        self.parse(key, default, |raw| match raw.parse::<u64>() {
            Ok(0) | Err(_) => Err("expected a whole number greater than zero".to_owned()),
            Ok(n) => Ok(n),
        })
    }

    fn url(&mut self, key: &str, default: &str) -> Result<Url, ConfigError> {
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

    fn leftovers(self) -> (Vec<String>, Vec<String>) {
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

impl BffConfig {
    /// The built-in defaults (what an empty environment gives).
    pub fn defaults(spec: BffSpec) -> Self {
        match Self::load(spec, None, std::iter::empty()) {
            Ok(config) => config,
            // The defaults are constants checked by a test; this cannot fail.
            Err(error) => unreachable!("built-in defaults are invalid: {error}"),
        }
    }

    /// Loads from `file` (if any) and `env`, checking every value.
    pub fn load(
        spec: BffSpec,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut s = Source::load(file, env)?;
        let listen = s.parse(
            "BFF_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], spec.default_port)),
            |raw| {
                raw.parse().map_err(|_| {
                    "expected an address such as 127.0.0.1:8081 or 0.0.0.0:8081".to_owned()
                })
            },
        )?;
        let jwks_url = s.url(
            "BFF_JWKS_URL",
            "http://127.0.0.1:7000/.well-known/jwks.json",
        )?;
        let issuer = s
            .take("BFF_ISSUER")
            .unwrap_or_else(|| "http://127.0.0.1:7000".to_owned());
        let audience = s
            .take("BFF_AUDIENCE")
            .unwrap_or_else(|| spec.name.to_owned());
        let jwks_refresh = s.duration("BFF_JWKS_REFRESH", Duration::from_secs(300))?;

        let base = UpstreamPolicy::default();
        let all = UpstreamPolicy {
            timeout: s.duration("BFF_UPSTREAM_ALL_TIMEOUT", base.timeout)?,
            breaker: BreakerConfig {
                failure_threshold: u32::try_from(s.positive(
                    "BFF_UPSTREAM_ALL_FAILURE_THRESHOLD",
                    u64::from(base.breaker.failure_threshold),
                )?)
                .map_err(|_| ConfigError::new("BFF_UPSTREAM_ALL_FAILURE_THRESHOLD", "too large"))?,
                open_for: s.duration("BFF_UPSTREAM_ALL_OPEN_FOR", base.breaker.open_for)?,
            },
            max_concurrency: s.positive(
                "BFF_UPSTREAM_ALL_MAX_CONCURRENCY",
                base.max_concurrency as u64,
            )? as usize,
        };
        let mut upstream_urls = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for name in UPSTREAMS {
            let key = format!("BFF_UPSTREAM_{}", name.to_uppercase());
            upstream_urls.insert(name, s.url(&key, default_url(name))?);
            let threshold_key = format!("{key}_FAILURE_THRESHOLD");
            let threshold = u32::try_from(
                s.positive(&threshold_key, u64::from(all.breaker.failure_threshold))?,
            )
            .map_err(|_| ConfigError::new(&threshold_key, "too large"))?;
            policies.insert(
                name,
                UpstreamPolicy {
                    timeout: s.duration(&format!("{key}_TIMEOUT"), all.timeout)?,
                    breaker: BreakerConfig {
                        failure_threshold: threshold,
                        open_for: s.duration(&format!("{key}_OPEN_FOR"), all.breaker.open_for)?,
                    },
                    max_concurrency: s.positive(
                        &format!("{key}_MAX_CONCURRENCY"),
                        all.max_concurrency as u64,
                    )? as usize,
                },
            );
        }
        let deadlines = Deadlines {
            request: s.duration("BFF_DEADLINE_REQUEST", Duration::from_millis(2500))?,
            critical: s.duration("BFF_DEADLINE_CRITICAL", Duration::from_millis(500))?,
            optional: s.duration("BFF_DEADLINE_OPTIONAL", Duration::from_secs(2))?,
        };
        if deadlines.critical > deadlines.request || deadlines.optional > deadlines.request {
            return Err(ConfigError::new(
                "BFF_DEADLINE_REQUEST",
                format!(
                    "must be at least the section deadlines ({:?}, {:?})",
                    deadlines.critical, deadlines.optional
                ),
            ));
        }
        let log_format = match s.take("BFF_LOG_FORMAT") {
            None => LogFormat::detect(),
            Some(raw) => LogFormat::parse(raw.trim()).ok_or_else(|| {
                ConfigError::new(
                    "BFF_LOG_FORMAT",
                    format!("expected json or pretty (got {raw:?})"),
                )
            })?,
        };
        let config = BffConfig {
            name: spec.name,
            listen,
            jwks_url,
            issuer,
            audience,
            jwks_refresh,
            upstream_urls,
            policies,
            connect_timeout: s.duration("BFF_CONNECT_TIMEOUT", Duration::from_millis(500))?,
            deadlines,
            cache_stale_for: s.duration("BFF_CACHE_STALE_FOR", Duration::from_secs(600))?,
            cache_max_entries: s.positive("BFF_CACHE_MAX_ENTRIES", 100_000)?,
            body_limit: s.positive("BFF_BODY_LIMIT", 64 * 1024)? as usize,
            shutdown_grace: s.duration("BFF_SHUTDOWN_GRACE", Duration::from_secs(10))?,
            log_format,
            log_filter: s.take("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            redis_url: s.take("REDIS_URL"),
            otlp_endpoint: s.take("OTEL_EXPORTER_OTLP_ENDPOINT"),
            service_name: s
                .take("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| spec.name.to_owned()),
            warnings: Vec::new(),
        };
        let (file_unknown, env_unknown) = s.leftovers();
        if let Some(key) = file_unknown.first() {
            return Err(ConfigError::new(
                key,
                "unknown key in the configuration file",
            ));
        }
        Ok(BffConfig {
            warnings: env_unknown
                .into_iter()
                .map(|k| format!("unknown variable {k} ignored"))
                .collect(),
            ..config
        })
    }

    /// The URL of upstream `name` (one of [`UPSTREAMS`]).
    pub fn upstream_url(&self, name: &str) -> &Url {
        // Every name of UPSTREAMS is filled by `load`.
        &self.upstream_urls[name]
    }

    /// The policy of upstream `name`.
    pub fn policy(&self, name: &str) -> UpstreamPolicy {
        self.policies.get(name).copied().unwrap_or_default()
    }
}

/// Reads `--config FILE` from the command line; anything else is an error
/// (`--help` and `--version` are answered by the caller).
pub fn config_path_from_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let mut args = args.into_iter();
    let mut path = None;
    while let Some(arg) = args.next() {
        if arg == "--config" {
            let value = args
                .next()
                .ok_or_else(|| ConfigError::new("--config", "expects a file path"))?;
            path = Some(value.into());
        } else if let Some(value) = arg.strip_prefix("--config=") {
            path = Some(value.into());
        } else {
            return Err(ConfigError::new(
                &arg,
                "unknown argument (usage: [--config FILE])",
            ));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: BffSpec = BffSpec {
        name: "bff-test",
        default_port: 8089,
    };

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = BffConfig::defaults(SPEC);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8089");
        assert_eq!(c.audience, "bff-test");
        assert_eq!(
            c.upstream_url("pricing").as_str(),
            "http://127.0.0.1:7005/graphql"
        );
        assert_eq!(c.issuer, "http://127.0.0.1:7000");
        assert_eq!(c.deadlines.critical, Duration::from_millis(500));
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("bff-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\naudience = \"from-file\"\n[upstream.user]\ntimeout = \"300ms\"\n[upstream.all]\nfailure_threshold = 7\n",
        )
        .expect("write");
        let c = BffConfig::load(
            SPEC,
            Some(&file),
            env(&[
                ("BFF_AUDIENCE", "from-env"),
                ("BFF_MOBILE_SERVICE_HOST", "10.0.0.1"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.audience, "from-env");
        assert_eq!(c.policy("user").timeout, Duration::from_millis(300));
        assert_eq!(c.policy("user").breaker.failure_threshold, 7);
        assert_eq!(
            c.policy("order").breaker.failure_threshold,
            7,
            "the all block applies to every upstream"
        );
        assert_eq!(
            c.warnings,
            ["unknown variable BFF_MOBILE_SERVICE_HOST ignored"]
        );
        std::fs::write(&file, "lisen = \"0.0.0.0:9000\"\n").expect("write");
        let err = BffConfig::load(SPEC, Some(&file), env(&[])).expect_err("typo");
        assert_eq!(err.key, "BFF_LISEN");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("BFF_LISTEN", "localhost"),
            ("BFF_JWKS_URL", "not a url"),
            ("BFF_JWKS_URL", "ftp://x/jwks"),
            ("BFF_UPSTREAM_USER", "::"),
            ("BFF_UPSTREAM_ORDER_TIMEOUT", "soon"),
            ("BFF_UPSTREAM_ORDER_TIMEOUT", "0ms"),
            ("BFF_UPSTREAM_ALL_FAILURE_THRESHOLD", "0"),
            ("BFF_UPSTREAM_PRODUCT_MAX_CONCURRENCY", "-3"),
            ("BFF_DEADLINE_CRITICAL", "10s"),
            ("BFF_LOG_FORMAT", "xml"),
            ("BFF_BODY_LIMIT", "big"),
        ];
        for (key, value) in cases {
            let err = BffConfig::load(SPEC, None, env(&[(key, value)])).expect_err(key);
            let expected = if key == "BFF_DEADLINE_CRITICAL" {
                "BFF_DEADLINE_REQUEST"
            } else {
                key
            };
            assert_eq!(err.key, expected, "{key}={value}: {err}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| config_path_from_args(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(args(&[]).expect("none"), None);
        assert_eq!(
            args(&["--config", "a.toml"]).expect("path"),
            Some("a.toml".into())
        );
        assert_eq!(
            args(&["--config=b.toml"]).expect("path"),
            Some("b.toml".into())
        );
        assert!(args(&["--config"]).is_err());
        assert!(args(&["--port", "1"]).is_err());
    }
}
