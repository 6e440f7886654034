//! The pricing service's price changes, turned into cache invalidations.
//!
//! A change evicts that product's `price:{id}` fragment and nothing else.
//! With Redis the changes arrive on the pricing service's pub/sub channel
//! (each replica listens; see [`TieredCache::listen`]); without it, each
//! process follows the service's Server-Sent Events feed (`GET /events`
//! beside its GraphQL endpoint), reconnecting by itself, so a fresh price
//! fragment is never served after its price changed in either set-up.

use std::time::Duration;

use bff_cache::tiered::{Invalidation, TieredCache};
use reqwest::Url;

use crate::PricingClient;
use crate::fragments::price_events;

/// Starts following price changes for `cache`, in the background.
pub fn follow_price_changes(pricing: &PricingClient, http: reqwest::Client, cache: &TieredCache) {
    if cache.is_shared() {
        cache.listen(price_events());
        return;
    }
    let Some(feed) = feed_url(pricing.endpoint()) else {
        tracing::warn!(endpoint = %pricing.endpoint(), "no price feed beside this pricing endpoint; price fragments expire by age only");
        return;
    };
    let cache = cache.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match follow(&http, &feed, &cache).await {
                Ok(()) => {
                    tracing::info!(%feed, "price feed ended; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(error) => tracing::warn!(%feed, %error, "price feed lost; reconnecting"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// `http://host:7005/graphql` → `http://host:7005/events`.
fn feed_url(endpoint: &Url) -> Option<Url> {
    endpoint.join("/events").ok()
}

/// One connection to the feed, until it ends.
async fn follow(http: &reqwest::Client, feed: &Url, cache: &TieredCache) -> reqwest::Result<()> {
    let mut response = http
        .get(feed.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await?
        .error_for_status()?;
    tracing::info!(%feed, "following price changes");
    let mut events = EventReader::default();
    let mappers = price_events();
    while let Some(chunk) = response.chunk().await? {
        for data in events.push(&chunk) {
            let items = mappers.values().flat_map(|map| map(data.as_bytes()));
            for item in items {
                if let Invalidation::Key(key) = item {
                    cache.invalidate(&key).await;
                }
            }
        }
    }
    Ok(())
}

/// Splits a Server-Sent Events byte stream into the `data` of each event
/// (multi-line data joined by `\n`; comments and other fields ignored).
#[derive(Debug, Default)]
struct EventReader {
    pending: Vec<u8>,
    data: Vec<String>,
}

impl EventReader {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut complete = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    complete.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_across_chunks() {
        let mut reader = EventReader::default();
        assert!(
            reader
                .push(b": keep-alive\n\nevent: price.changed\ndata: {\"a\"")
                .is_empty()
        );
        assert_eq!(
            reader.push(b":1}\n\ndata: x\r\ndata: y\n\n"),
            ["{\"a\":1}", "x\ny"]
        );
    }

    #[test]
    fn the_feed_is_beside_the_graphql_endpoint() {
        let endpoint = Url::parse("http://127.0.0.1:7005/graphql").expect("url");
        assert_eq!(
            feed_url(&endpoint).map(String::from).as_deref(),
            Some("http://127.0.0.1:7005/events")
        );
    }
}
