//! Configuration that each crate owns.
//!
//! A crate that has settings declares them as one `#[derive(Deserialize)]`
//! struct with `#[serde(default, deny_unknown_fields)]`, its defaults in
//! `Default`, and its rules across fields in [`Section::check`]; the binary
//! only assembles the sections ([`Sources::section`]). A new key is then an
//! edit of the crate that reads it, not of the edge.
//!
//! Keys are named as the environment names them: the field `heartbeat` of
//! the section under the prefix `LIVE` is `BFF_LIVE_HEARTBEAT`, and a file
//! may spell it `BFF_LIVE_HEARTBEAT = "…"`, `live_heartbeat` or
//! `[live] heartbeat`. The environment wins over the file. Every value is
//! text (as the environment has it) parsed by the section's own parsers
//! ([`de`]), so a value means the same from either source, and a bad one is
//! a [`ConfigError`] naming its key and what was given.

pub mod de;
mod fields;
mod sources;

pub use sources::{Sources, key};

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
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A rule across a section's fields that its values break, named by the
/// field to change ([`Sources`] turns it into the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as the section's struct names it.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// A crate's settings: a struct whose fields are keys (`#[serde(default)]`
/// takes the missing ones from `Default`; `deny_unknown_fields` refuses a
/// stray one), read by [`Sources::section`].
pub trait Section: serde::de::DeserializeOwned + Default {
    /// The rules between fields, once each value is valid on its own.
    fn check(&self) -> Result<(), FieldError> {
        Ok(())
    }
}
