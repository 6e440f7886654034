//! The shared tier: Redis keys, tags and channel of this BFF's namespace,
//! every call bounded by the timeout and its errors counted, and the lock
//! that lets one replica load a cold key while the others wait for its copy.

use super::lookup::OwnedEnvelope;
use super::*;

/// How often a replica waiting on another's lock looks for its copy.
pub(super) const LOCK_POLL: Duration = Duration::from_millis(10);

/// What a load may do about the other replicas.
pub(super) enum Lock {
    /// No Redis, or it failed, or the holder's copy did not come in time:
    /// load without a lock.
    Free,
    /// This replica holds the key's lock: load, then release it.
    Held,
    /// The replica that held the lock stored this copy meanwhile.
    Copy(Entry),
}

impl TieredCache {
    /// `{bff}:fm{shape}:{key}`: `fm`, fragments in MessagePack (another
    /// encoding gets another prefix), then the shape version of the key's
    /// kind, so releases whose value types differ never read each other's.
    pub(super) fn shared_key(&self, key: &str) -> String {
        format!("{}:fm{}:{key}", self.inner.namespace, self.shape_of(key))
    }

    pub(super) fn lock_key(&self, key: &str) -> String {
        format!("{}:l{}:{key}", self.inner.namespace, self.shape_of(key))
    }

    pub(super) fn tag_key(&self, tag: &str) -> String {
        format!("{}:t:{tag}", self.inner.namespace)
    }

    pub(super) fn channel(&self) -> String {
        format!("{}.cache.invalidate", self.inner.namespace)
    }

    /// Runs one Redis command with the timeout, counting and logging a
    /// failure; `None` when it failed.
    pub(super) async fn redis<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let shared = self.inner.shared.as_ref()?;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(shared.timeout, command(shared.conn.clone())).await;
        metrics::histogram!(names::CACHE_SHARED_DURATION, "op" => op)
            .record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", shared.timeout),
        };
        metrics::counter!(names::CACHE_SHARED_ERRORS, "op" => op).increment(1);
        tracing::warn!(op, %error, "shared cache call failed; going on without it");
        None
    }

    /// Redis's copy of `key` if it is usable and stored after
    /// `newer_than`; it then fills this process too.
    pub(super) async fn get_shared<T>(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        newer_than: Option<u64>,
    ) -> Option<Entry>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.inner.shared.as_ref()?;
        let shared_key = self.shared_key(key);
        let bytes: Option<Vec<u8>> = self
            .redis("get", |mut c| async move { c.get(shared_key).await })
            .await
            .flatten();
        let bytes = bytes?;
        let envelope: OwnedEnvelope<T> = match rmp_serde::from_slice(&bytes) {
            Ok(e) => e,
            Err(error) => {
                // Another shape under the same version: never served; the
                // next load replaces it.
                metrics::counter!(names::CACHE_UNDECODABLE, "kind" => policy.kind).increment(1);
                tracing::warn!(key, %error, "undecodable shared fragment ignored (its shape changed without a new shape version?)");
                return None;
            }
        };
        if newer_than.is_some_and(|t| envelope.t <= t) {
            return None;
        }
        let entry = Entry {
            value: Arc::new(envelope.v),
            stored_at_ms: envelope.t,
            policy: *policy,
            weight: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            tags: (!envelope.g.is_empty()).then(|| envelope.g.as_slice().into()),
        };
        policy.freshness(age_of(entry.stored_at_ms))?;
        self.remember_tags(key, &envelope.g);
        self.inner.local.insert(key.to_owned(), entry.clone()).await;
        Some(entry)
    }

    pub(super) fn put_shared(
        &self,
        policy: &FragmentPolicy,
        key: &str,
        tags: &[String],
        bytes: Option<Vec<u8>>,
    ) {
        let Some(bytes) = bytes else { return };
        let this = self.clone();
        let shared_key = self.shared_key(key);
        let ttl_ms = policy.keep_for().as_millis() as u64;
        let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        tokio::spawn(async move {
            this.redis("set", |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&shared_key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                for tag in &tag_keys {
                    pipe.cmd("SADD").arg(tag).arg(&shared_key).ignore();
                    pipe.cmd("PEXPIRE").arg(tag).arg(ttl_ms).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        });
    }

    /// With Redis, takes `key`'s short lock; when another replica holds
    /// it, waits (up to `lock_for`) for that replica's copy.
    pub(super) async fn lock_or_wait<T>(&self, policy: &FragmentPolicy, key: &str) -> Lock
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if self.inner.shared.is_none() {
            return Lock::Free;
        }
        let lock_key = self.lock_key(key);
        let lock_ms = self.inner.lock_for.as_millis() as u64;
        let taken: Option<Option<String>> = self
            .redis("lock", |mut c| async move {
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match taken {
            Some(Some(_)) => return Lock::Held,
            // Redis failed: load here.
            None => return Lock::Free,
            Some(None) => {}
        }
        let started = now_ms();
        let until = tokio::time::Instant::now() + self.inner.lock_for;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(LOCK_POLL).await;
            let newer_than = started.saturating_sub(lock_ms);
            if let Some(entry) = self.get_shared::<T>(policy, key, Some(newer_than)).await {
                return Lock::Copy(entry);
            }
        }
        Lock::Free
    }

    pub(super) fn unlock(&self, key: &str, lock: Lock) {
        if !matches!(lock, Lock::Held) {
            return;
        }
        let this = self.clone();
        let lock_key = self.lock_key(key);
        tokio::spawn(async move {
            this.redis(
                "unlock",
                |mut c| async move { c.del::<_, ()>(lock_key).await },
            )
            .await;
        });
    }
}
