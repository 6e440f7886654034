//! Telemetry's configuration, owned here: `BFF_LOG_FORMAT`, `RUST_LOG`,
//! and the standard `OTEL_*` variables of the export.

use bff_config::{ConfigError, Section, Sources, de};

use crate::LogFormat;
use crate::export::{ExportConfig, VARIABLES};

/// Logs and export, configured.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Log line format (by default JSON unless stdout is a terminal).
    pub log_format: LogFormat,
    /// The `RUST_LOG` filter (`info`).
    pub log_filter: String,
    /// OTLP export; nothing without an endpoint.
    pub export: ExportConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LogSection {
    #[serde(deserialize_with = "log_format")]
    log_format: Option<LogFormat>,
}

impl Section for LogSection {}

fn log_format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LogFormat>, D::Error> {
    de::text(d, |raw| {
        LogFormat::parse(raw)
            .map(Some)
            .ok_or_else(|| "expected json or pretty".to_owned())
    })
}

impl TelemetrySettings {
    /// Reads the log keys and the `OTEL_*` variables (the names
    /// [`crate::OTEL_VARIABLES`] lists, from the environment).
    pub fn configure(s: &mut Sources) -> Result<Self, ConfigError> {
        let logs: LogSection = s.section("")?;
        let otel: Vec<(&str, String)> = VARIABLES
            .iter()
            .filter_map(|key| s.take(key).map(|value| (*key, value)))
            .collect();
        let export = ExportConfig::from_env(|key| {
            otel.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        })
        .map_err(|e| ConfigError::new(e.key, e.message))?;
        Ok(TelemetrySettings {
            log_format: logs.log_format.unwrap_or_else(LogFormat::detect),
            log_filter: s.take("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            export,
        })
    }
}
