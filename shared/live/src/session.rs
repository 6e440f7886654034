//! One client's live stream, whatever carries it: the snapshot first, then
//! the hub's events, heartbeats, and an end with a reason.
//!
//! The session pulls from the hub only as fast as its transport writes to
//! the client, so a client that stops reading holds one write and nothing
//! else: meanwhile its place in the key's ring is overtaken, and when it
//! reads again it gets the latest state (a new snapshot) instead of the
//! backlog. Nobody waits for it, and its memory does not grow.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bff_telemetry::names;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::streams::Ticket;
use crate::{Delivery, Event, EventId, Missed, Subscription};

/// An event as clients receive it: its type and its JSON (with the type,
/// the id and a timestamp in it), rendered once and shared by every
/// watcher.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's type (the SSE event name, the JSON `type`).
    pub kind: &'static str,
    /// Its id (the SSE `id`, a WebSocket resume token), if it has one.
    pub id: Option<EventId>,
    /// The JSON sent.
    pub json: Arc<str>,
}

#[derive(Serialize)]
struct Wire<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    timestamp: String,
    #[serde(flatten)]
    body: &'a T,
}

/// Now, as RFC 3339 (UTC, milliseconds).
pub fn timestamp() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

impl Frame {
    /// `{"type": kind, "id": …, "timestamp": now, …body}`; `body` must
    /// serialise as a map (a struct).
    pub fn new<T: Serialize>(kind: &'static str, id: Option<EventId>, body: &T) -> Frame {
        let wire = Wire {
            kind,
            id: id.map(|id| id.to_string()),
            timestamp: timestamp(),
            body,
        };
        let json = serde_json::to_string(&wire).unwrap_or_else(|error| {
            tracing::error!(%error, kind, "a live event could not be rendered");
            format!(r#"{{"type":"{kind}"}}"#)
        });
        Frame {
            kind,
            id,
            json: json.into(),
        }
    }
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EndBody {
    reason: EndReason,
}

/// Why the server ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EndReason {
    /// The token the stream was opened with expired: reconnect with a new one.
    TokenExpired,
    /// The stream reached its maximum lifetime: reconnect (and resume).
    MaxLifetime,
    /// Nothing happened for the idle timeout.
    Idle,
    /// The server is shutting down: reconnect (to another replica).
    Shutdown,
}

impl EndReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::TokenExpired => "token_expired",
            EndReason::MaxLifetime => "max_lifetime",
            EndReason::Idle => "idle",
            EndReason::Shutdown => "shutdown",
        }
    }

    /// The WebSocket close code: 1001 (going away) on shutdown, 4401 (the
    /// private-use mirror of HTTP 401) for an expired token, 1000 otherwise.
    pub fn close_code(self) -> u16 {
        match self {
            EndReason::Shutdown => 1001,
            EndReason::TokenExpired => 4401,
            EndReason::MaxLifetime | EndReason::Idle => 1000,
        }
    }
}

/// The `end` frame for `reason`.
pub fn end_frame(reason: EndReason) -> Frame {
    Frame::new("end", None, &EndBody { reason })
}

/// What a session sends next.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An event (shared with the key's other watchers, or this client's own
    /// snapshot).
    Event(Arc<Event<Frame>>),
    /// This client's snapshot, a heartbeat or the end.
    Own(Frame),
    /// The stream is over, for this reason (the `end` frame was sent).
    Closed(EndReason),
}

impl Outgoing {
    /// The frame to send, unless the stream is over.
    pub fn frame(&self) -> Option<&Frame> {
        match self {
            Outgoing::Event(event) => Some(&event.payload),
            Outgoing::Own(frame) => Some(frame),
            Outgoing::Closed(_) => None,
        }
    }
}

/// A snapshot of the watched key's state, made for the session, with the
/// id it covers up to.
pub type Snapshot = Pin<Box<dyn Future<Output = Frame> + Send>>;

/// Makes snapshots: called with the id the snapshot covers (`None` when
/// unknown).
pub type SnapshotFn = Arc<dyn Fn(Option<EventId>) -> Snapshot + Send + Sync>;

/// See the module documentation.
pub struct Session<K: Eq + std::hash::Hash> {
    ticket: Ticket,
    subscription: Subscription<K, Frame>,
    snapshot: SnapshotFn,
    loading: Option<Snapshot>,
    ends_at: Instant,
    end_reason: EndReason,
    idle_at: Instant,
    idle_timeout: Duration,
    heartbeat: Interval,
    draining: CancellationToken,
    ended: Option<EndReason>,
    transport: &'static str,
}

impl<K: Eq + std::hash::Hash> std::fmt::Debug for Session<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("transport", &self.transport)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + std::hash::Hash> Session<K> {
    /// A session over `subscription`, admitted by `ticket`, for a token
    /// that expires at `expires_at` (seconds since the Unix epoch). Unless
    /// the client resumed within the replay window, the first thing sent is
    /// a snapshot from `snapshot`.
    pub fn new(
        ticket: Ticket,
        subscription: Subscription<K, Frame>,
        snapshot: SnapshotFn,
        expires_at: i64,
        resumed: bool,
    ) -> Self {
        let config = *ticket.streams().config();
        let now = Instant::now();
        let token_left = expires_at.saturating_sub(OffsetDateTime::now_utc().unix_timestamp());
        let token_left = Duration::from_secs(u64::try_from(token_left).unwrap_or(0));
        let (lifetime, end_reason) = if token_left < config.max_lifetime {
            (token_left, EndReason::TokenExpired)
        } else {
            (config.max_lifetime, EndReason::MaxLifetime)
        };
        let mut heartbeat = tokio::time::interval_at(now + config.heartbeat, config.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let loading = (!resumed).then(|| snapshot(subscription.position()));
        let draining = ticket.streams().draining();
        Session {
            ticket,
            subscription,
            snapshot,
            loading,
            ends_at: now + lifetime,
            end_reason,
            idle_at: now + config.idle_timeout,
            idle_timeout: config.idle_timeout,
            heartbeat,
            draining,
            ended: None,
            transport: "sse",
        }
    }

    pub(crate) fn set_transport(&mut self, transport: &'static str) {
        self.transport = transport;
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        self.ticket.streams().config().write_timeout
    }

    /// The next thing to send; `None` after [`Outgoing::Closed`]. Cancel
    /// safe: a snapshot being made is kept for the next call.
    pub async fn next(&mut self) -> Option<Outgoing> {
        if self.ended.is_some() {
            return None;
        }
        let out = self.step().await;
        match &out {
            Outgoing::Closed(reason) => {
                self.ended = Some(*reason);
                metrics::counter!(names::LIVE_ENDED, "reason" => reason.as_str()).increment(1);
            }
            other => {
                if let Some(frame) = other.frame() {
                    if frame.kind != "heartbeat" {
                        self.idle_at = Instant::now() + self.idle_timeout;
                    }
                    metrics::counter!(names::LIVE_EVENTS, "type" => frame.kind).increment(1);
                }
            }
        }
        Some(out)
    }

    async fn step(&mut self) -> Outgoing {
        let Session {
            subscription,
            snapshot,
            loading,
            ends_at,
            end_reason,
            idle_at,
            heartbeat,
            draining,
            ..
        } = self;
        loop {
            let waiting = loading.is_none();
            let pending = async {
                match loading.as_mut() {
                    Some(made) => made.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = draining.cancelled() => return Outgoing::Closed(EndReason::Shutdown),
                () = tokio::time::sleep_until(*ends_at) => return Outgoing::Closed(*end_reason),
                () = tokio::time::sleep_until(*idle_at) => return Outgoing::Closed(EndReason::Idle),
                frame = pending => {
                    *loading = None;
                    return Outgoing::Own(frame);
                }
                delivery = subscription.next(), if waiting => match delivery {
                    Some(Delivery::Event(event)) => return Outgoing::Event(event),
                    Some(Delivery::Resync(missed)) => {
                        let (reason, count) = match missed {
                            Missed::Lagged(n) => ("lagged", n),
                            Missed::OutOfWindow => ("resume_window", 1),
                        };
                        metrics::counter!(names::LIVE_DROPS, "reason" => reason).increment(count);
                        *loading = Some(snapshot(subscription.position()));
                    }
                    // The hub is gone: the process is stopping.
                    None => return Outgoing::Closed(EndReason::Shutdown),
                },
                _ = heartbeat.tick() => return Outgoing::Own(Frame::new("heartbeat", None, &Empty {})),
            }
        }
    }
}
