//! A broadcast hub for live updates.
//!
//! Browsers watching the same thing (a product's price and stock) must not
//! each cost an upstream stream: the hub keeps **one upstream subscription
//! per key**, opened when the first watcher arrives and stopped when the
//! last one leaves, and fans its events out to every watcher.
//!
//! Memory is bounded whatever the watchers do: events travel through one
//! bounded ring per key (tokio's `broadcast`), so a watcher that stops
//! reading does not hold anything back for the others nor grow a queue of
//! its own; when it falls more than the ring behind it is told to
//! [`Delivery::Resync`] (send the client the current state instead of the
//! events it missed). The last `replay` events of each key are kept, so a
//! client that reconnects with the id of the last event it saw gets what it
//! missed, or a `Resync` when that is out of the window.
//!
//! Event ids carry the hub's epoch (random per process), so an id from
//! another replica or an earlier run is recognised as unknown rather than
//! mistaken for a recent one.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

pub mod follow;
pub mod session;
pub mod streams;
pub mod transport;

pub use follow::{Followed, Reconnecting};
pub use session::{EndReason, Frame, Outgoing, Session, SnapshotFn};
pub use streams::{LiveConfig, Streams, Ticket};
pub use transport::{sse, websocket};

/// How much each key keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Events in flight per key; a watcher further behind must resync.
    pub buffer: usize,
    /// Recent events kept per key for resuming.
    pub replay: usize,
    /// How long a key stays open after its last watcher left, so that a
    /// client that reconnects (a page reload, a network change, a drained
    /// replica's clients moving over) resumes instead of starting over,
    /// and the upstream stream is not reopened for it.
    pub linger: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            buffer: 64,
            replay: 256,
            linger: Duration::ZERO,
        }
    }
}

/// An event's id: the hub's epoch and a sequence number, written
/// `{epoch:08x}-{seq}` (an SSE `id`, a WebSocket resume token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    epoch: u32,
    seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

/// A resume token that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEventId;

impl fmt::Display for BadEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected an event id like 1f2e3d4c-42")
    }
}

impl std::error::Error for BadEventId {}

impl FromStr for EventId {
    type Err = BadEventId;
    fn from_str(s: &str) -> Result<Self, BadEventId> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(BadEventId)?;
        if epoch.len() != 8 {
            return Err(BadEventId);
        }
        Ok(EventId {
            epoch: u32::from_str_radix(epoch, 16).map_err(|_| BadEventId)?,
            seq: seq.parse().map_err(|_| BadEventId)?,
        })
    }
}

/// One published event.
#[derive(Debug)]
pub struct Event<E> {
    /// Its id.
    pub id: EventId,
    /// What happened.
    pub payload: E,
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum Delivery<E> {
    /// The next event.
    Event(Arc<Event<E>>),
    /// Events were missed: send the current state, then go on.
    Resync(Missed),
}

/// Why a watcher missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// It fell more than the ring behind (this many events).
    Lagged(u64),
    /// It resumed from an id outside the replay window (or unknown).
    OutOfWindow,
}

struct Topic<K: Eq + Hash, E> {
    key: K,
    sender: broadcast::Sender<Arc<Event<E>>>,
    replay: Mutex<VecDeque<Arc<Event<E>>>>,
    upstream: Mutex<Option<AbortHandle>>,
    hub: Weak<Inner<K, E>>,
}

impl<K: Eq + Hash, E> Drop for Topic<K, E> {
    fn drop(&mut self) {
        // The last watcher left: stop the upstream subscription, forget the key.
        if let Some(task) = self.upstream.lock().take() {
            task.abort();
        }
        if let Some(hub) = self.hub.upgrade() {
            let mut topics = hub.topics.lock();
            if topics.get(&self.key).is_some_and(|t| t.strong_count() == 0) {
                topics.remove(&self.key);
            }
        }
    }
}

type Open<K, E> =
    dyn Fn(K, Publisher<K, E>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

struct Inner<K: Eq + Hash, E> {
    config: HubConfig,
    epoch: u32,
    seq: AtomicU64,
    topics: Mutex<HashMap<K, Weak<Topic<K, E>>>>,
    open: Box<Open<K, E>>,
    opened: AtomicU64,
}

/// See the crate documentation.
pub struct Hub<K: Eq + Hash, E> {
    inner: Arc<Inner<K, E>>,
}

impl<K: Eq + Hash, E> Clone for Hub<K, E> {
    fn clone(&self) -> Self {
        Hub {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Eq + Hash, E> fmt::Debug for Hub<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("opened", &self.inner.opened.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where an upstream subscription publishes its events. Publishing after
/// the last watcher left is a no-op.
pub struct Publisher<K: Eq + Hash, E> {
    topic: Weak<Topic<K, E>>,
    hub: Weak<Inner<K, E>>,
}

impl<K: Eq + Hash, E> Publisher<K, E> {
    /// Sends `payload` to every watcher of the key, and keeps it for
    /// resuming. Returns the event's id, or `None` when nobody watches.
    pub fn publish(&self, payload: E) -> Option<EventId> {
        self.publish_with(|_| payload)
    }

    /// Like [`publish`](Self::publish), with a payload made from the
    /// event's id (so that it can carry it, rendered once for every
    /// watcher).
    pub fn publish_with(&self, payload: impl FnOnce(EventId) -> E) -> Option<EventId> {
        let (topic, hub) = (self.topic.upgrade()?, self.hub.upgrade()?);
        let mut replay = topic.replay.lock();
        // Ids are taken and events sent under the replay lock, so a watcher
        // subscribing meanwhile sees each event once: in the replay or live.
        let id = EventId {
            epoch: hub.epoch,
            seq: hub.seq.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let event = Arc::new(Event {
            id,
            payload: payload(id),
        });
        if replay.len() == hub.config.replay {
            replay.pop_front();
        }
        if hub.config.replay > 0 {
            replay.push_back(event.clone());
        }
        let _ = topic.sender.send(event);
        Some(id)
    }

    /// Whether anybody still watches (an upstream loop may stop when not).
    pub fn is_watched(&self) -> bool {
        self.topic.strong_count() > 0
    }
}

impl<K, E> Hub<K, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A hub whose upstream subscription for a key is `open(key, publisher)`:
    /// a future that publishes until it ends or is aborted (when the last
    /// watcher leaves). Reconnecting to a dropped upstream is its job.
    pub fn new<F, Fut>(config: HubConfig, open: F) -> Self
    where
        F: Fn(K, Publisher<K, E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Hub {
            inner: Arc::new(Inner {
                config: HubConfig {
                    buffer: config.buffer.max(1),
                    ..config
                },
                epoch: rand::random(),
                seq: AtomicU64::new(0),
                topics: Mutex::default(),
                open: Box::new(move |key, publisher| Box::pin(open(key, publisher))),
                opened: AtomicU64::new(0),
            }),
        }
    }

    /// Watches `key`, from now or, given the id of the last event a client
    /// saw, from just after it. Must run inside a Tokio runtime (the first
    /// watcher of a key starts its upstream subscription).
    pub fn subscribe(&self, key: K, after: Option<EventId>) -> Subscription<K, E> {
        let topic = self.topic(key);
        let mut pending = VecDeque::new();
        let receiver;
        let last;
        {
            let replay = topic.replay.lock();
            receiver = topic.sender.subscribe();
            if let Some(after) = after {
                // Only an id still in the window proves nothing was missed
                // (ids are per hub, so the gaps between a key's ids say
                // nothing, and an id from another epoch is unknown).
                let known = replay.iter().any(|e| e.id == after);
                if known {
                    pending.extend(
                        replay
                            .iter()
                            .filter(|e| e.id > after)
                            .map(|e| Delivery::Event(e.clone())),
                    );
                } else {
                    pending.push_back(Delivery::Resync(Missed::OutOfWindow));
                }
            }
            // Every later event comes live; the replay covers the rest.
            last = replay.back().map(|e| e.id);
        }
        let linger = self.inner.config.linger;
        let linger: Option<Linger> = (!linger.is_zero()).then(|| {
            let topic = Arc::downgrade(&topic);
            Box::new(move || {
                if let (Some(topic), Ok(runtime)) =
                    (topic.upgrade(), tokio::runtime::Handle::try_current())
                {
                    runtime.spawn(async move {
                        tokio::time::sleep(linger).await;
                        drop(topic);
                    });
                }
            }) as Linger
        });
        Subscription {
            topic,
            receiver,
            pending,
            last,
            linger,
        }
    }

    fn topic(&self, key: K) -> Arc<Topic<K, E>> {
        let mut topics = self.inner.topics.lock();
        if let Some(topic) = topics.get(&key).and_then(Weak::upgrade) {
            return topic;
        }
        let (sender, _) = broadcast::channel(self.inner.config.buffer);
        let topic = Arc::new(Topic {
            key: key.clone(),
            sender,
            replay: Mutex::new(VecDeque::with_capacity(self.inner.config.replay.min(64))),
            upstream: Mutex::new(None),
            hub: Arc::downgrade(&self.inner),
        });
        topics.insert(key.clone(), Arc::downgrade(&topic));
        let publisher = Publisher {
            topic: Arc::downgrade(&topic),
            hub: Arc::downgrade(&self.inner),
        };
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn((self.inner.open)(key, publisher));
        *topic.upstream.lock() = Some(task.abort_handle());
        topic
    }

    /// Whether `key` is open now (watched, or lingering).
    pub fn is_open(&self, key: &K) -> bool {
        self.inner
            .topics
            .lock()
            .get(key)
            .is_some_and(|t| t.strong_count() > 0)
    }

    /// The keys watched now.
    pub fn keys(&self) -> Vec<K> {
        self.inner
            .topics
            .lock()
            .iter()
            .filter(|(_, t)| t.strong_count() > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// How many upstream subscriptions were opened since the start.
    pub fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }
}

type Linger = Box<dyn FnOnce() + Send + Sync>;

/// One watcher of a key; dropping it leaves.
pub struct Subscription<K: Eq + Hash, E> {
    topic: Arc<Topic<K, E>>,
    receiver: broadcast::Receiver<Arc<Event<E>>>,
    pending: VecDeque<Delivery<E>>,
    last: Option<EventId>,
    /// Keeps the key open after the last watcher left (when configured).
    linger: Option<Linger>,
}

impl<K: Eq + Hash, E> Drop for Subscription<K, E> {
    fn drop(&mut self) {
        // The last watcher leaves: keep the key open a while longer.
        if Arc::strong_count(&self.topic) == 1
            && let Some(linger) = self.linger.take()
        {
            linger();
        }
    }
}

impl<K: Eq + Hash, E> fmt::Debug for Subscription<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, E> Subscription<K, E> {
    /// The next delivery; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Delivery<E>> {
        if let Some(delivery) = self.pending.pop_front() {
            return Some(delivery);
        }
        loop {
            match self.receiver.recv().await {
                Ok(event) => {
                    // Already delivered from the replay.
                    if self.last.is_some_and(|last| event.id <= last) {
                        continue;
                    }
                    self.last = Some(event.id);
                    return Some(Delivery::Event(event));
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    self.last = None;
                    return Some(Delivery::Resync(Missed::Lagged(skipped)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Where this watcher stands: the id of the newest event it has been
    /// given or has queued, or that was already published when it
    /// subscribed. State read after subscribing is at least this new, so a
    /// client resuming from this id misses nothing.
    pub fn position(&self) -> Option<EventId> {
        self.last
    }

    /// How many watchers the key has (this one included).
    pub fn watchers(&self) -> usize {
        Arc::strong_count(&self.topic)
    }
}
