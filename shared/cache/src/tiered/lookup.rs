//! Reads and writes through both tiers: a value found in Redis is kept
//! in the local tier too; what is put goes to both, with its tags.

use super::*;

/// A fragment as stored in Redis: when the upstream answered, its tags
/// (so a replica that reads it indexes them too), the value.
#[derive(Serialize)]
pub(super) struct Envelope<'a, T> {
    pub(super) t: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(super) g: &'a [String],
    pub(super) v: &'a T,
}

#[derive(serde::Deserialize)]
pub(super) struct OwnedEnvelope<T> {
    pub(super) t: u64,
    #[serde(default)]
    pub(super) g: Vec<String>,
    pub(super) v: T,
}
impl TieredCache {
    /// The fragment under `key`: this process's copy while it is fresh;
    /// otherwise the newer of it and Redis's (which then fills this
    /// process), so a copy another replica refreshed is picked up here.
    /// `None` when neither has a usable copy.
    pub async fn get<T>(&self, policy: &FragmentPolicy, key: &str) -> Option<Cached<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let local = self.inner.local.get(key).await;
        let local_is_fresh = local
            .as_ref()
            .is_some_and(|e| e.policy.freshness(age_of(e.stored_at_ms)) == Some(Freshness::Fresh));
        let found = if local_is_fresh || self.inner.shared.is_none() {
            local.and_then(|e| Self::typed(e, Tier::Local))
        } else {
            let newer_than = local.as_ref().map(|e| e.stored_at_ms);
            match self.get_shared::<T>(policy, key, newer_than).await {
                Some(entry) => Self::typed(entry, Tier::Shared),
                None => local.and_then(|e| Self::typed(e, Tier::Local)),
            }
        };
        let result = match &found {
            Some(c) if c.freshness == Freshness::Stale => "stale",
            Some(_) => "hit",
            None => "miss",
        };
        let tier = match &found {
            Some(Cached {
                tier: Tier::Shared, ..
            }) => "shared",
            Some(_) => "local",
            None => "none",
        };
        metrics::counter!(names::CACHE_FRAGMENTS, "kind" => policy.kind, "result" => result, "tier" => tier)
            .increment(1);
        found
    }

    /// Counts a copy served although not fresh.
    pub fn served_stale(&self, policy: &FragmentPolicy, reason: StaleReason) {
        metrics::counter!(names::CACHE_STALE_SERVED, "kind" => policy.kind, "reason" => reason.label())
            .increment(1);
    }

    pub(super) fn typed<T: Send + Sync + 'static>(entry: Entry, tier: Tier) -> Option<Cached<T>> {
        let age = age_of(entry.stored_at_ms);
        let freshness = entry.policy.freshness(age)?;
        let value = entry.value.downcast::<T>().ok()?;
        Some(Cached {
            value,
            age,
            freshness,
            tier,
        })
    }

    /// Stores the fragment the upstream just answered with, here and (in
    /// the background) in Redis, with `tags` for invalidation by tag.
    pub async fn put<T>(&self, policy: &FragmentPolicy, key: &str, tags: &[String], value: Arc<T>)
    where
        T: Serialize + Send + Sync + 'static,
    {
        let (entry, bytes) = self.prepare(policy, key, tags, value);
        self.remember_tags(key, tags);
        self.inner.local.insert(key.to_owned(), entry).await;
        self.put_shared(policy, key, tags, bytes);
    }

    /// Whether this process holds a copy of `key` younger than `within`.
    /// A copy kept only to stand in for failures (a kind that is never
    /// served fresh) need not be rewritten then: a stand-in a moment old is
    /// as good as a new one, and not rewriting it saves most of a store's
    /// cost on every request (a partner batch would rewrite 150 of them).
    pub async fn holds_recent(&self, key: &str, within: Duration) -> bool {
        self.inner
            .local
            .get(key)
            .await
            .is_some_and(|entry| age_of(entry.stored_at_ms) < within)
    }

    /// The local entry of a fresh value, and its bytes for Redis when Redis
    /// is configured (their length then weighs the entry).
    pub(super) fn prepare<T>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        value: Arc<T>,
    ) -> (Entry, Option<Vec<u8>>)
    where
        T: Serialize + Send + Sync + 'static,
    {
        let stored_at_ms = now_ms();
        let envelope = Envelope {
            t: stored_at_ms,
            g: tags,
            v: &*value,
        };
        let (weight, bytes) = if self.inner.shared.is_some() {
            match rmp_serde::to_vec_named(&envelope) {
                Ok(b) => (b.len(), Some(b)),
                Err(error) => {
                    tracing::warn!(key, %error, "fragment does not serialise; kept here only");
                    (policy.approx_bytes as usize, None)
                }
            }
        } else {
            (policy.approx_bytes as usize, None)
        };
        let entry = Entry {
            value,
            stored_at_ms,
            policy: *policy,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            tags: (!tags.is_empty()).then(|| tags.into()),
        };
        (entry, bytes)
    }

    pub(super) fn remember_tags(&self, key: &str, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let mut tagged = self.inner.tagged.lock();
        for tag in tags {
            tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.to_owned());
        }
    }
}
