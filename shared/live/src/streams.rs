//! The open streams of one process: their limits and their drain.
//!
//! A live stream holds a connection for minutes or hours, so what bounds a
//! request's cost elsewhere (deadlines, rate limits per second) does not
//! bound it here. [`Streams`] counts them, per subject and per replica, and
//! refuses one over either limit before anything is upgraded (429 and 503
//! with `Retry-After`, as problem+json). On shutdown [`Streams::drain`]
//! tells every stream to end with a reason, and [`Streams::drained`] waits
//! for them, so a rolling restart closes streams cleanly instead of
//! cutting them when the process exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bff_problem::ApiError;
use bff_telemetry::names;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Tuning of live streams: the configuration section `BFF_LIVE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// A `heartbeat` event this often, so proxies and clients see the
    /// stream alive (`BFF_LIVE_HEARTBEAT`).
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub heartbeat: Duration,
    /// A stream with no event but heartbeats for this long is ended
    /// (`BFF_LIVE_IDLE_TIMEOUT`).
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub idle_timeout: Duration,
    /// No stream lives longer (`BFF_LIVE_MAX_LIFETIME`); the client resumes
    /// on a new one. A token's expiry ends it sooner.
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub max_lifetime: Duration,
    /// Open streams per subject (`BFF_LIVE_MAX_PER_SUBJECT`); more get 429.
    #[serde(deserialize_with = "bff_config::de::count")]
    pub max_per_subject: usize,
    /// Open streams per replica (`BFF_LIVE_MAX_STREAMS`); more get 503.
    #[serde(deserialize_with = "bff_config::de::count")]
    pub max_streams: usize,
    /// Events in flight per watched key; a client further behind gets the
    /// latest state instead (`BFF_LIVE_BUFFER`).
    #[serde(deserialize_with = "bff_config::de::count")]
    pub buffer: usize,
    /// Events kept per watched key for resuming (`BFF_LIVE_REPLAY`).
    #[serde(deserialize_with = "bff_config::de::count")]
    pub replay: usize,
    /// A watched key stays open this long after its last watcher left, so
    /// a reconnecting client resumes (`BFF_LIVE_LINGER`).
    #[serde(deserialize_with = "bff_config::de::duration_or_zero")]
    pub linger: Duration,
    /// A write to a client that takes longer ends its stream (a stuck
    /// client holds nothing for long).
    #[serde(deserialize_with = "bff_config::de::duration")]
    pub write_timeout: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(60 * 60),
            max_per_subject: 8,
            max_streams: 10_000,
            buffer: 32,
            replay: 256,
            linger: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Read under `BFF_LIVE_`: every value stands on its own.
impl bff_config::Section for LiveConfig {}

struct Inner {
    config: LiveConfig,
    subjects: Mutex<HashMap<String, usize>>,
    open: Mutex<usize>,
    draining: CancellationToken,
    tracker: TaskTracker,
}

/// See the module documentation.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("config", &self.inner.config)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// No stream open yet.
    pub fn new(config: LiveConfig) -> Self {
        Streams {
            inner: Arc::new(Inner {
                config,
                subjects: Mutex::default(),
                open: Mutex::new(0),
                draining: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LiveConfig {
        &self.inner.config
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        *self.inner.open.lock()
    }

    /// A place for one more stream of `subject`, or the problem to answer
    /// instead: 503 while draining or when the replica is full, 429 when
    /// the subject has its share.
    pub fn admit(&self, subject: &str) -> Result<Ticket, ApiError> {
        let refuse = |reason: &'static str| {
            metrics::counter!(names::LIVE_REFUSED, "reason" => reason).increment(1);
        };
        if self.inner.draining.is_cancelled() {
            refuse("draining");
            return Err(ApiError::unavailable(
                "this replica is shutting down; reconnect to another",
                1,
            ));
        }
        let config = &self.inner.config;
        let mut open = self.inner.open.lock();
        if *open >= config.max_streams {
            refuse("replica_limit");
            return Err(ApiError::unavailable(
                format!(
                    "this replica holds its maximum of {} live streams",
                    config.max_streams
                ),
                5,
            ));
        }
        let mut subjects = self.inner.subjects.lock();
        let mine = subjects.entry(subject.to_owned()).or_default();
        if *mine >= config.max_per_subject {
            refuse("subject_limit");
            return Err(ApiError::rate_limited(
                format!(
                    "at most {} live streams per user; close one first",
                    config.max_per_subject
                ),
                5,
            ));
        }
        *mine += 1;
        *open += 1;
        Ok(Ticket {
            streams: self.clone(),
            subject: subject.to_owned(),
            _tracked: self.inner.tracker.token(),
        })
    }

    /// Tells every stream to end (reason `shutdown`) and refuses new ones.
    pub fn drain(&self) {
        self.inner.draining.cancel();
    }

    /// Resolves once every stream has ended (after [`drain`](Self::drain)).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    pub(crate) fn draining(&self) -> CancellationToken {
        self.inner.draining.clone()
    }
}

/// One admitted stream; its place is given back when dropped.
pub struct Ticket {
    streams: Streams,
    subject: String,
    _tracked: TaskTrackerToken,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").finish_non_exhaustive()
    }
}

impl Ticket {
    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let inner = &self.streams.inner;
        {
            let mut open = inner.open.lock();
            *open = open.saturating_sub(1);
        }
        let mut subjects = inner.subjects.lock();
        if let Some(n) = subjects.get_mut(&self.subject) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                subjects.remove(&self.subject);
            }
        }
    }
}
