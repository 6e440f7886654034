//! Typed fragment declarations: what a BFF caches, declared once in the
//! BFF's own crate.
//!
//! Why typed: a fragment's key, value type and tags used to be loose
//! strings built at each call site (`format!("user:{id}")`), so two call
//! sites could store different types under one key, a per-user key could
//! forget its subject, and nothing tied an invalidation to the fragment it
//! meant. A [`Fragment`] names all of it once — the kind, the shape version
//! of its value, its windows, whether it belongs to one user, the type of
//! its key and of its value, and the tags it is stored with — and the call
//! sites only hand it typed arguments:
//!
//! ```
//! use std::time::Duration;
//! use bff_cache::fragment::{Fragment, TagPrefix};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Price;
//!
//! /// Every fragment of one product carries this tag (`product:{id}`).
//! const PRODUCT_TAG: TagPrefix = TagPrefix::new("product");
//!
//! /// A product's price: fresh for 10 s, then a stand-in for 10 min.
//! const PRICE: Fragment<u64, Price> = Fragment::shared("price", 1)
//!     .fresh_for(Duration::from_secs(10))
//!     .stale_for(Duration::from_secs(600))
//!     .tagged(PRODUCT_TAG, |id| id.to_string());
//!
//! assert_eq!(PRICE.key(&42), "price:42");
//! assert_eq!(PRICE.tags(&42), ["product:42"]);
//! ```
//!
//! The policy a fragment is declared with is its team's default; the
//! environment (`BFF_CACHE_{KIND}_FRESH`, …) may override its windows, and
//! the store applies the override ([`FragmentStore::policy_of`]).
//!
//! [`FragmentStore::policy_of`]: crate::tiered::FragmentStore::policy_of

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::time::Duration;

use crate::policy::{FragmentPolicy, Invalidation};

/// A part of a fragment's key: written into the key text, `:`-separated.
///
/// Implemented for the identifiers keys are made of; a tuple is its parts
/// in order (`(user, 5)` → `{user}:5`).
pub trait KeyPart {
    /// Appends this part to `key`.
    fn write_to(&self, key: &mut String);
}

impl KeyPart for uuid::Uuid {
    fn write_to(&self, key: &mut String) {
        // Hyphenated lower case: the form the services and logs use.
        let mut buf = uuid::Uuid::encode_buffer();
        key.push_str(self.hyphenated().encode_lower(&mut buf));
    }
}

macro_rules! key_part_display {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn write_to(&self, key: &mut String) {
                let _ = write!(key, "{self}");
            }
        }
    )*};
}
key_part_display!(u16, u32, u64, usize, i64, str, String);

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_to(&self, key: &mut String) {
        (**self).write_to(key);
    }
}

impl<A: KeyPart, B: KeyPart> KeyPart for (A, B) {
    fn write_to(&self, key: &mut String) {
        self.0.write_to(key);
        key.push(':');
        self.1.write_to(key);
    }
}

/// The name of a family of tags, such as `product`: a fragment declared
/// [`tagged`](Fragment::tagged) with it is stored under the tag
/// `product:{id}`, so that purging `product:{id}` forgets every fragment of
/// that product. A prefix is not a tag: only [`TagPrefix::of`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagPrefix(&'static str);

impl TagPrefix {
    /// The family `name`.
    pub const fn new(name: &'static str) -> Self {
        TagPrefix(name)
    }

    /// The family's name.
    pub const fn name(self) -> &'static str {
        self.0
    }

    /// The tag of `id` in this family (`{name}:{id}`).
    pub fn of(self, id: &str) -> String {
        let mut tag = String::with_capacity(self.0.len() + 1 + id.len());
        tag.push_str(self.0);
        tag.push(':');
        tag.push_str(id);
        tag
    }
}

/// What a tag takes from a fragment's key.
type IdOf<K> = fn(&K) -> String;

/// One kind of cached fragment: its policy, the type of its key `K` and of
/// its value `V`, and the tag it is stored with. See the module
/// documentation. Declared as a `const` in the BFF that caches it.
pub struct Fragment<K, V> {
    policy: FragmentPolicy,
    tag: Option<(TagPrefix, IdOf<K>)>,
    types: PhantomData<fn(&K) -> V>,
}

// Derives would ask `K: Clone` and `V: Clone`; a declaration is always
// copyable.
impl<K, V> Clone for Fragment<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Fragment<K, V> {}

impl<K, V> std::fmt::Debug for Fragment<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragment")
            .field("policy", &self.policy)
            .field("tag", &self.tag.map(|(prefix, _)| prefix.name()))
            .finish()
    }
}

impl<K, V> Fragment<K, V> {
    const fn new(kind: &'static str, shape: u16, per_user: bool) -> Self {
        Fragment {
            policy: FragmentPolicy {
                kind,
                shape,
                fresh_for: Duration::ZERO,
                revalidate_for: Duration::ZERO,
                stale_for: Duration::ZERO,
                approx_bytes: 4096,
                per_user,
            },
            tag: None,
            types: PhantomData,
        }
    }

    /// A fragment of one user's data: its key must carry the subject, and
    /// a response built from it may only be cached privately.
    ///
    /// `shape` is the version of the stored value's shape: bump it when `V`
    /// changes so that entries of the previous release no longer decode (or
    /// mean something else). Releases with the same shape share entries;
    /// releases with different shapes never read each other's.
    pub const fn per_user(kind: &'static str, shape: u16) -> Self {
        Self::new(kind, shape, true)
    }

    /// A fragment that is the same for every caller (a product, a price).
    /// `shape` as in [`per_user`](Self::per_user).
    pub const fn shared(kind: &'static str, shape: u16) -> Self {
        Self::new(kind, shape, false)
    }

    /// Served without asking the upstream for this long.
    pub const fn fresh_for(mut self, window: Duration) -> Self {
        self.policy.fresh_for = window;
        self
    }

    /// Then served while one background refresh runs, for this long.
    pub const fn revalidate_for(mut self, window: Duration) -> Self {
        self.policy.revalidate_for = window;
        self
    }

    /// Then kept to stand in for a failed upstream, for this long.
    pub const fn stale_for(mut self, window: Duration) -> Self {
        self.policy.stale_for = window;
        self
    }

    /// What one fragment weighs in the in-process tier when it is not
    /// serialised for Redis (default 4 KiB).
    pub const fn approx_bytes(mut self, bytes: u32) -> Self {
        self.policy.approx_bytes = bytes;
        self
    }

    /// Stored with the tag `prefix:{id}`, where `id` is what `id_of` takes
    /// from the key (e.g. the product of a `(product, n)` key).
    pub const fn tagged(mut self, prefix: TagPrefix, id_of: fn(&K) -> String) -> Self {
        self.tag = Some((prefix, id_of));
        self
    }

    /// The declared policy (before any configuration override).
    pub const fn policy(&self) -> FragmentPolicy {
        self.policy
    }

    /// The kind.
    pub const fn kind(&self) -> &'static str {
        self.policy.kind
    }

    /// The family of the tag it is stored with, if any.
    pub fn tag_prefix(&self) -> Option<TagPrefix> {
        self.tag.map(|(prefix, _)| prefix)
    }
}

impl<K: KeyPart, V> Fragment<K, V> {
    /// The key of the fragment of `key` (`{kind}:{key}`).
    pub fn key(&self, key: &K) -> String {
        let mut text = String::with_capacity(self.policy.kind.len() + 40);
        text.push_str(self.policy.kind);
        text.push(':');
        key.write_to(&mut text);
        text
    }

    /// The tags the fragment of `key` is stored with.
    pub fn tags(&self, key: &K) -> Vec<String> {
        match self.tag {
            Some((prefix, id_of)) => vec![prefix.of(&id_of(key))],
            None => Vec::new(),
        }
    }

    /// What forgets the fragment of `key` (for event mappings).
    pub fn invalidation(&self, key: &K) -> Invalidation {
        Invalidation::Key(self.key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: Fragment<(uuid::Uuid, u32), Vec<u32>> = Fragment::per_user("orders", 2)
        .fresh_for(Duration::from_secs(30))
        .tagged(TagPrefix::new("user"), |(user, _)| user.to_string());

    #[test]
    fn keys_are_the_kind_then_the_typed_parts() {
        let user = uuid::Uuid::from_u128(7);
        assert_eq!(
            ORDERS.key(&(user, 5)),
            "orders:00000000-0000-0000-0000-000000000007:5"
        );
        assert_eq!(
            ORDERS.tags(&(user, 5)),
            ["user:00000000-0000-0000-0000-000000000007"]
        );
        assert_eq!(
            ORDERS.invalidation(&(user, 5)),
            Invalidation::Key(ORDERS.key(&(user, 5)))
        );
        let policy = ORDERS.policy();
        assert!(policy.per_user);
        assert_eq!((policy.kind, policy.shape), ("orders", 2));
        assert_eq!(policy.fresh_for, Duration::from_secs(30));
        assert_eq!(policy.stale_for, Duration::ZERO);
    }
}
