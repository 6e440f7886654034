//! Following an upstream stream that may be cut: [`Reconnecting`] opens it,
//! hands out its items, and when it fails or ends reopens it after a
//! jittered backoff (every replica's streams drop together when a service
//! restarts; they must not all come back at the same instant). Each failed
//! open and each cut is reported once, as [`Followed::Lost`], so the caller
//! can tell its watchers (`degraded`) and, with the next item, that it is
//! back (`recovered`).
//!
//! [`Reconnecting::next`] is cancel-safe: an open in progress is kept
//! across calls, so a `select!` whose other branch wins often never
//! starves it.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bff_telemetry::names;
use bff_upstream::Backoff;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Timeout};

/// What a followed stream gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed<T> {
    /// An item of the stream.
    Item(T),
    /// The stream could not be opened or was cut, and why; it is being
    /// reopened.
    Lost(String),
}

/// A stream of `T` that reopens itself with `open`. See the module
/// documentation.
pub struct Reconnecting<S, F> {
    source: &'static str,
    open: Box<dyn FnMut() -> F + Send>,
    open_timeout: Duration,
    opening: Option<Pin<Box<Timeout<F>>>>,
    stream: Option<S>,
    backoff: Backoff,
    retry_at: Instant,
}

impl<S, F> std::fmt::Debug for Reconnecting<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("source", &self.source)
            .field("open", &self.stream.is_some())
            .finish()
    }
}

impl<S, F, T, E, OE> Reconnecting<S, F>
where
    F: Future<Output = Result<S, OE>>,
    S: Stream<Item = Result<T, E>> + Unpin,
    E: Display,
    OE: Display,
{
    /// Follows the stream `open` gives, named `source` in metrics
    /// (`live_upstream_reconnects_total{source}`), logs and losses; an
    /// open taking longer than `open_timeout` is a failed one. The first
    /// open is at once; after a loss, 100 ms doubling up to 5 s, jittered,
    /// back to 100 ms once an item arrives.
    pub fn new(
        source: &'static str,
        open_timeout: Duration,
        open: impl FnMut() -> F + Send + 'static,
    ) -> Self {
        Reconnecting {
            source,
            open: Box::new(open),
            open_timeout,
            opening: None,
            stream: None,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            retry_at: Instant::now(),
        }
    }

    fn lost(&mut self, reason: String) -> Followed<T> {
        self.retry_at = Instant::now() + self.backoff.next_delay();
        Followed::Lost(reason)
    }

    fn cut(&mut self, reason: String) -> Followed<T> {
        self.stream = None;
        metrics::counter!(names::LIVE_UPSTREAM_RECONNECTS, "source" => self.source).increment(1);
        tracing::warn!(
            source = self.source,
            reason,
            "upstream stream lost; reconnecting"
        );
        self.lost(reason)
    }

    /// The next item or loss; never ends (a stream that ends is reopened).
    pub async fn next(&mut self) -> Followed<T> {
        loop {
            if let Some(stream) = self.stream.as_mut() {
                return match stream.next().await {
                    Some(Ok(item)) => {
                        self.backoff.reset();
                        Followed::Item(item)
                    }
                    Some(Err(error)) => self.cut(error.to_string()),
                    None => self.cut(format!("the {} stream ended", self.source)),
                };
            }
            let opening = match &mut self.opening {
                Some(opening) => opening,
                None => {
                    tokio::time::sleep_until(self.retry_at).await;
                    let open = tokio::time::timeout(self.open_timeout, (self.open)());
                    self.opening.insert(Box::pin(open))
                }
            };
            let opened = opening.await;
            self.opening = None;
            match opened {
                // Recovery is reported with the stream's first item.
                Ok(Ok(stream)) => self.stream = Some(stream),
                Ok(Err(error)) => return self.lost(error.to_string()),
                Err(_) => {
                    return self.lost(format!("timed out opening the {} stream", self.source));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
