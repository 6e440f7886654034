//! The pricing service's price changes: for cache invalidation and for the
//! live updates browsers watch.
//!
//! With Redis the changes arrive on the pricing service's pub/sub channel;
//! without it, they come from the service's Server-Sent Events feed (`GET
//! /events` beside its GraphQL endpoint). A [`PriceFeed`] follows either,
//! reconnecting with jittered backoff and saying when it is connected and
//! when it lost the feed, so that a live stream can tell its clients that
//! prices may be stale meanwhile.
//!
//! A change evicts what the BFF says it invalidates (its price fragment of
//! that product, typically) and nothing else. With Redis each replica's
//! cache listens to the channel itself (see [`TieredCache::listen`]);
//! without it [`follow_price_changes`] follows the feed, so a fresh price
//! fragment is never served after its price changed in either set-up.

use std::time::Duration;

use std::collections::HashMap;
use std::sync::Arc;

use bff_cache::tiered::{EventMapper, Invalidation, TieredCache};
use bff_upstream::Backoff;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{PRICE_EVENTS, PricingClient};

/// How long connecting to the feed may take before it counts as lost.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A price change, as the pricing service publishes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceChange {
    /// The product.
    pub product_id: Uuid,
    /// Selling price, minor units.
    pub current: u64,
    /// List price, minor units.
    pub original: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Percentage off.
    pub discount: f64,
    /// The price's version after the change.
    pub version: u64,
    /// When it changed (RFC 3339).
    pub changed_at: String,
}

/// What following the feed reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Connected (again): changes from now on arrive.
    Connected,
    /// A price changed.
    Changed(PriceChange),
    /// The feed was lost (changes meanwhile are missed); reconnecting.
    Lost(String),
}

#[derive(Debug, Clone)]
enum Source {
    Redis(redis::Client),
    Events { http: reqwest::Client, url: Url },
}

/// Where this process hears of price changes. See the module documentation.
#[derive(Debug, Clone)]
pub struct PriceFeed {
    source: Source,
}

impl PriceFeed {
    /// The Redis channel when `redis_url` is set, else the pricing
    /// service's event stream; `None` when neither exists (a pricing
    /// endpoint with no feed beside it).
    ///
    /// # Errors
    /// When `redis_url` is not a Redis URL.
    pub fn new(
        pricing: &PricingClient,
        http: reqwest::Client,
        redis_url: Option<&str>,
    ) -> redis::RedisResult<Option<Self>> {
        if let Some(url) = redis_url {
            return Ok(Some(PriceFeed {
                source: Source::Redis(redis::Client::open(url)?),
            }));
        }
        Ok(feed_url(pricing.endpoint()).map(|url| PriceFeed {
            source: Source::Events { http, url },
        }))
    }

    /// Where the changes come from, for logs.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Redis(client) => format!(
                "redis channel {PRICE_EVENTS} on {}",
                client.get_connection_info().addr()
            ),
            Source::Events { url, .. } => url.to_string(),
        }
    }

    /// Follows the feed, sending what happens to `events`, reconnecting
    /// with jittered backoff, until `events` is closed.
    pub async fn follow(&self, events: mpsc::Sender<FeedEvent>) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let outcome = match &self.source {
                Source::Redis(client) => follow_redis(client, &events).await,
                Source::Events { http, url } => follow_events(http, url, &events).await,
            };
            let reason = match outcome {
                Followed::Closed => return,
                Followed::Ended { delivered } => {
                    if delivered {
                        backoff.reset();
                    }
                    "the feed ended".to_owned()
                }
                Followed::Failed { delivered, error } => {
                    if delivered {
                        backoff.reset();
                    }
                    error
                }
            };
            tracing::warn!(feed = %self.describe(), %reason, "price feed lost; reconnecting");
            if events.send(FeedEvent::Lost(reason)).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// How one connection to the feed ended.
enum Followed {
    /// Nobody listens any more.
    Closed,
    /// The feed ended cleanly.
    Ended { delivered: bool },
    /// The feed failed.
    Failed { delivered: bool, error: String },
}

/// Connects within [`CONNECT_TIMEOUT`], or says why not.
async fn connect<T, E: std::fmt::Display>(
    what: &str,
    connecting: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Followed> {
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connected)) => return Ok(connected),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("timed out {what}"),
    };
    Err(Followed::Failed {
        delivered: false,
        error,
    })
}

async fn follow_redis(client: &redis::Client, events: &mpsc::Sender<FeedEvent>) -> Followed {
    use futures::StreamExt;
    let subscribed = connect("subscribing", async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(PRICE_EVENTS).await?;
        redis::RedisResult::Ok(pubsub)
    })
    .await;
    let pubsub = match subscribed {
        Ok(pubsub) => pubsub,
        Err(failed) => return failed,
    };
    if events.send(FeedEvent::Connected).await.is_err() {
        return Followed::Closed;
    }
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        if let Some(change) = parse(message.get_payload_bytes())
            && events.send(FeedEvent::Changed(change)).await.is_err()
        {
            return Followed::Closed;
        }
    }
    Followed::Ended { delivered: true }
}

async fn follow_events(
    http: &reqwest::Client,
    feed: &Url,
    events: &mpsc::Sender<FeedEvent>,
) -> Followed {
    let connected = connect("connecting", async {
        http.get(feed.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await?
            .error_for_status()
    })
    .await;
    let mut response = match connected {
        Ok(response) => response,
        Err(failed) => return failed,
    };
    if events.send(FeedEvent::Connected).await.is_err() {
        return Followed::Closed;
    }
    let mut reader = EventReader::default();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            () = events.closed() => return Followed::Closed,
        };
        match chunk {
            Ok(Some(chunk)) => {
                for data in reader.push(&chunk) {
                    if let Some(change) = parse(data.as_bytes())
                        && events.send(FeedEvent::Changed(change)).await.is_err()
                    {
                        return Followed::Closed;
                    }
                }
            }
            Ok(None) => return Followed::Ended { delivered: true },
            Err(error) => {
                return Followed::Failed {
                    delivered: true,
                    error: error.to_string(),
                };
            }
        }
    }
}

fn parse(payload: &[u8]) -> Option<PriceChange> {
    serde_json::from_slice(payload)
        .map_err(|error| tracing::warn!(%error, "unreadable price event ignored"))
        .ok()
}

/// Starts following price changes for `cache`, in the background: each
/// change forgets what `invalidates` maps it to (the BFF's own fragments).
pub fn follow_price_changes(
    pricing: &PricingClient,
    http: reqwest::Client,
    cache: &TieredCache,
    invalidates: fn(&PriceChange) -> Vec<Invalidation>,
) {
    if cache.is_shared() {
        let map: EventMapper = Arc::new(move |payload: &[u8]| {
            parse(payload).map_or_else(Vec::new, |c| invalidates(&c))
        });
        cache.listen(HashMap::from([(PRICE_EVENTS.to_owned(), map)]));
        return;
    }
    let feed = match PriceFeed::new(pricing, http, None) {
        Ok(Some(feed)) => feed,
        _ => {
            tracing::warn!(endpoint = %pricing.endpoint(), "no price feed beside this pricing endpoint; price fragments expire by age only");
            return;
        }
    };
    let cache = cache.clone();
    tokio::spawn(async move {
        let (events, mut received) = mpsc::channel(64);
        let follow = feed.follow(events);
        let apply = async {
            while let Some(event) = received.recv().await {
                match event {
                    FeedEvent::Changed(change) => {
                        cache.forget(invalidates(&change)).await;
                    }
                    FeedEvent::Connected => {
                        tracing::info!(feed = %feed.describe(), "following price changes")
                    }
                    FeedEvent::Lost(_) => {}
                }
            }
        };
        tokio::join!(follow, apply);
    });
}

/// `http://host:7005/graphql` → `http://host:7005/events`.
fn feed_url(endpoint: &Url) -> Option<Url> {
    endpoint.join("/events").ok()
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
