//! Parsers of values from their text, for `#[serde(deserialize_with)]`.
//!
//! Every value arrives as text (the environment has nothing else), so each
//! parser reads a string and says in words what it expected; [`crate::Sources`]
//! adds the key and the value given.

use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

/// The value's text, trimmed, parsed by `parse` (its error is the message).
pub fn text<'de, D, T>(d: D, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = String::deserialize(d)?;
    parse(raw.trim()).map_err(D::Error::custom)
}

/// A duration such as `500ms`, `2s` or `1m`, more than zero.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    text(d, |raw| {
        let d = humantime::parse_duration(raw)
            .map_err(|_| "expected a duration such as 500ms, 2s or 1m".to_owned())?;
        if d.is_zero() {
            Err("must be more than zero".to_owned())
        } else {
            Ok(d)
        }
    })
}

fn parse_duration_or_zero(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|_| "expected a duration such as 0s, 500ms, 2s or 1m".to_owned())
}

/// A duration, zero allowed.
pub fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    text(d, parse_duration_or_zero)
}

/// A duration, zero allowed, for a field whose default is decided outside
/// the section (`None`: not given).
pub fn some_duration_or_zero<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    text(d, parse_duration_or_zero).map(Some)
}

/// A count of things held at once: from 1 to 10,000,000.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    text(d, |raw| match raw.parse::<usize>() {
        Ok(0) | Err(_) => Err("expected a whole number greater than zero".to_owned()),
        Ok(n) if n > 10_000_000 => Err("expected at most 10000000".to_owned()),
        Ok(n) => Ok(n),
    })
}

/// A whole number greater than zero that fits `T`.
pub fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    text(d, |raw| match raw.parse::<u64>() {
        Ok(0) | Err(_) => Err("expected a whole number greater than zero".to_owned()),
        Ok(n) => T::try_from(n).map_err(|_| "too large".to_owned()),
    })
}

/// A whole number from 0 to `MAX`.
pub fn whole<'de, const MAX: u64, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    text(d, |raw| match raw.parse::<u64>() {
        Ok(n) if n <= MAX => T::try_from(n).map_err(|_| "too large".to_owned()),
        _ => Err(format!("expected a whole number from 0 to {MAX}")),
    })
}

/// A percentage from `MIN` to 100.
pub fn percent<'de, const MIN: u8, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    text(d, |raw| match raw.parse::<u8>() {
        Ok(n) if (MIN..=100).contains(&n) => Ok(n),
        _ => Err(format!("expected a percentage from {MIN} to 100")),
    })
}

/// `true`, `1` or `on`; `false`, `0` or `off`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    text(d, |raw| match raw {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    })
}

/// `on` or `off`.
pub fn on_off<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    text(d, |raw| match raw {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".to_owned()),
    })
}

/// An `http://` or `https://` URL with a host.
pub fn parse_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL".to_owned());
    }
    Ok(url)
}

/// An `http://` or `https://` URL with a host.
pub fn url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    text(d, parse_url)
}

/// An optional `http://` or `https://` URL (`None`: not given).
pub fn some_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<url::Url>, D::Error> {
    text(d, parse_url).map(Some)
}

/// A comma-separated list; blanks between commas are skipped.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    text(d, |raw| {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    })
}

/// Text, present (`None`: not given; the default is decided elsewhere).
pub fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |raw| Ok(raw.to_owned())).map(Some)
}
