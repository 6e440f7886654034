//! How a response may be reused, from what its sections served.

use std::sync::Arc;
use std::time::Duration;

use bff_upstream::Failure;
use parking_lot::Mutex;

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) name: &'static str,
    pub(crate) failure: Option<Failure>,
    pub(crate) stale: bool,
    /// How long the data served may still be reused (zero: not at all).
    pub(crate) reusable_for: Duration,
    /// Whether the data belongs to one user (or is not known not to).
    pub(crate) per_user: bool,
}

/// How a client (or a cache between it and us) may reuse a response, from
/// what its sections served: for the `Cache-Control` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A section failed: the response describes a passing failure.
    NoStore,
    /// Every section is reusable for `max_age`; `private` when one of them
    /// belongs to a user (or is not cached, so not known not to).
    For {
        /// Whether only the client itself may keep it.
        private: bool,
        /// The shortest time any section may still be reused.
        max_age: Duration,
    },
}

impl Reuse {
    /// The `Cache-Control` value.
    pub fn header_value(self) -> String {
        match self {
            Reuse::NoStore => "no-store".to_owned(),
            Reuse::For { private, max_age } => {
                let scope = if private { "private" } else { "public" };
                match max_age.as_secs() {
                    0 => format!("{scope}, no-cache"),
                    secs => format!("{scope}, max-age={secs}"),
                }
            }
        }
    }
}

/// Reads, after the handler has run, how the response may be reused
/// ([`Aggregation::reuse_handle`](crate::Aggregation::reuse_handle)).
#[derive(Debug, Clone)]
pub struct ReuseHandle(pub(crate) Arc<Mutex<Vec<Outcome>>>);

impl ReuseHandle {
    /// What the sections run so far allow; `None` before any ran.
    pub fn reuse(&self) -> Option<Reuse> {
        reuse_of(&self.0.lock())
    }
}

pub(crate) fn reuse_of(outcomes: &[Outcome]) -> Option<Reuse> {
    if outcomes.is_empty() {
        return None;
    }
    if outcomes.iter().any(|o| o.failure.is_some()) {
        return Some(Reuse::NoStore);
    }
    Some(Reuse::For {
        private: outcomes.iter().any(|o| o.per_user),
        max_age: outcomes
            .iter()
            .map(|o| o.reusable_for)
            .min()
            .unwrap_or_default(),
    })
}
