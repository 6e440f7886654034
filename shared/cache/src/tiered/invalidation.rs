//! Invalidation by key and by tag: here, in Redis, and in every other
//! replica through the namespace's channel; and the event channels whose
//! messages map to invalidations.

use super::*;

impl TieredCache {
    /// Forgets `key` here, in Redis, and in every other replica.
    pub async fn invalidate(&self, key: &str) {
        self.forget(vec![Invalidation::Key(key.to_owned())]).await;
    }

    /// Forgets every fragment stored with `tag`, everywhere.
    pub async fn invalidate_tag(&self, tag: &str) {
        self.forget(vec![Invalidation::Tag(tag.to_owned())]).await;
    }

    /// Forgets each of `what` here, in Redis, and in every other replica.
    pub async fn forget(&self, what: Vec<Invalidation>) {
        for item in &what {
            self.forget_locally(item).await;
            metrics::counter!(names::CACHE_INVALIDATIONS, "by" => match item { Invalidation::Key(_) => "key", Invalidation::Tag(_) => "tag" })
                .increment(1);
        }
        if self.inner.shared.is_none() {
            return;
        }
        for item in what {
            match &item {
                Invalidation::Key(k) => {
                    let shared_key = self.shared_key(k);
                    self.redis(
                        "del",
                        |mut c| async move { c.del::<_, ()>(shared_key).await },
                    )
                    .await;
                }
                Invalidation::Tag(t) => {
                    let tag_key = self.tag_key(t);
                    self.redis("del_tag", |mut c| async move {
                        let keys: Vec<String> = c.smembers(&tag_key).await?;
                        let mut pipe = redis::pipe();
                        for k in keys {
                            pipe.cmd("DEL").arg(k).ignore();
                        }
                        pipe.cmd("DEL").arg(&tag_key).ignore();
                        pipe.query_async::<()>(&mut c).await
                    })
                    .await;
                }
            }
            let channel = self.channel();
            let message = item.encode();
            self.redis("publish", |mut c| async move {
                c.publish::<_, _, ()>(channel, message).await
            })
            .await;
        }
    }

    pub(super) async fn forget_locally(&self, item: &Invalidation) {
        for running in self
            .inner
            .in_flight
            .lock()
            .iter()
            .filter(|(key, running)| match item {
                Invalidation::Key(k) => *key == k,
                Invalidation::Tag(t) => running.tags.contains(t),
            })
            .map(|(_, running)| running)
        {
            running
                .overtaken
                .store(true, std::sync::atomic::Ordering::Release);
        }
        match item {
            Invalidation::Key(k) => self.inner.local.invalidate(k).await,
            Invalidation::Tag(t) => {
                let keys = self.inner.tagged.lock().remove(t).unwrap_or_default();
                for key in keys {
                    self.inner.local.invalidate(&key).await;
                }
            }
        }
    }

    /// Listens, in the background, to the invalidations other replicas
    /// publish and to the `events` channels (each mapped to what it
    /// invalidates, e.g. a price change to that product's price fragment),
    /// reconnecting with backoff whenever Redis goes away. Without Redis,
    /// does nothing: in-process invalidations are already applied.
    pub fn listen(&self, events: HashMap<String, EventMapper>) {
        let Some(shared) = self.inner.shared.as_ref() else {
            return;
        };
        let client = shared.client.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let own = this.channel();
            let mut backoff = Duration::from_millis(100);
            loop {
                match this.subscribe(&client, &own, &events).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        metrics::counter!(names::CACHE_SHARED_ERRORS, "op" => "subscribe")
                            .increment(1);
                        tracing::warn!(%error, "invalidation channel lost; reconnecting");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// One subscription, until the connection ends.
    pub(super) async fn subscribe(
        &self,
        client: &redis::Client,
        own: &str,
        events: &HashMap<String, EventMapper>,
    ) -> redis::RedisResult<()> {
        use futures::StreamExt;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(own).await?;
        for channel in events.keys() {
            pubsub.subscribe(channel).await?;
        }
        tracing::info!(channel = own, "listening for cache invalidations");
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let channel = message.get_channel_name().to_owned();
            let payload = message.get_payload_bytes();
            let items = if channel == own {
                std::str::from_utf8(payload)
                    .ok()
                    .and_then(Invalidation::decode)
                    .into_iter()
                    .collect()
            } else if let Some(map) = events.get(&channel) {
                map(payload)
            } else {
                Vec::new()
            };
            // The sender cleared its own shape's copy; a release of another
            // shape clears its own (idempotent), and events from elsewhere
            // clear Redis too.
            for item in &items {
                if let Invalidation::Key(k) = item {
                    let shared_key = self.shared_key(k);
                    self.redis(
                        "del",
                        |mut c| async move { c.del::<_, ()>(shared_key).await },
                    )
                    .await;
                }
            }
            for item in &items {
                self.forget_locally(item).await;
                metrics::counter!(names::CACHE_INVALIDATIONS, "by" => "event").increment(1);
            }
        }
        Ok(())
    }
}
