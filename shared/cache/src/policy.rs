//! What a kind of fragment may do (its windows, whether it is per user)
//! and what forgets a fragment: the vocabulary that the typed declarations
//! ([`crate::fragment`]) and the store ([`crate::tiered`]) share, so that
//! neither imports the other's.

use std::time::Duration;

/// How long a kind of fragment may be served, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPolicy {
    /// The kind, for metrics (`user`, `price`, …).
    pub kind: &'static str,
    /// The version of the stored value's shape: part of the fragment's
    /// Redis key, so releases of one BFF whose value types differ never
    /// decode each other's entries.
    pub shape: u16,
    /// Served without asking the upstream.
    pub fresh_for: Duration,
    /// Then served while one background refresh runs.
    pub revalidate_for: Duration,
    /// Then served only when the upstream fails.
    pub stale_for: Duration,
    /// What one fragment weighs in the local tier when it is not
    /// serialised for Redis (without Redis, weighing each fragment by
    /// serialising it would cost ~10 µs per dashboard on every store).
    pub approx_bytes: u32,
    /// Whether the fragment belongs to one user (its key then carries the
    /// subject): a response built from it may only be cached privately.
    pub per_user: bool,
}

impl FragmentPolicy {
    /// How long a fragment is kept at all.
    pub fn keep_for(&self) -> Duration {
        self.fresh_for + self.revalidate_for + self.stale_for
    }

    /// How usable a fragment of this age is; `None` once it may not be
    /// served at all.
    pub fn freshness(&self, age: Duration) -> Option<Freshness> {
        if age < self.fresh_for {
            Some(Freshness::Fresh)
        } else if age < self.fresh_for + self.revalidate_for {
            Some(Freshness::Revalidate)
        } else if age < self.keep_for() {
            Some(Freshness::Stale)
        } else {
            None
        }
    }
}

/// How usable a cached fragment is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Revalidate,
    /// Serve it only if the upstream fails.
    Stale,
}

/// One thing to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One fragment.
    Key(String),
    /// Every fragment stored with this tag.
    Tag(String),
}
