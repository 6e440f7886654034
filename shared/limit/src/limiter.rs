//! Places in flight under one limit, partitioned by class, with a short
//! wait for a place and a refusal after it.
//!
//! Classes: each is given a share of the limit (a percentage) that the
//! others cannot take. A class may use any place not kept for another, so
//! one alone uses the whole limit, and a burst of one class leaves the
//! others' shares untouched: a class is admitted only while the places in
//! flight plus the places kept unused for the other classes are under the
//! limit. (Netflix's partitioned limiter instead admits a class under its
//! share even past the limit; keeping the places instead holds the limit
//! exactly, which is what a bulkhead's reserve for critical calls needs.)
//!
//! Waiting: a request that finds no place waits at most the wait it was
//! given (the queue target) and is then refused; when the queue already
//! holds as many as the limit, it is refused at once, since the places
//! that free up within a short wait go to those already waiting; and for a
//! window after one in which most waiters (at least two) were refused,
//! nobody waits (as CoDel drops at once once the queue has stood above its
//! target for an interval): under a lasting overload a wait only delays
//! the refusal and costs the CPU a timer, while the bunching of arrivals
//! at a limit that keeps up is still absorbed by the wait. A place
//! that frees up goes straight to a waiter (the class furthest below its
//! share first, in arrival order within a class), never to a newcomer.
//!
//! Measuring: a place's latency is from its admission to its return, so
//! time spent waiting for a place does not feed the limit that made it
//! wait. Every [`LimiterConfig::window`] (and at least
//! [`LimiterConfig::min_samples`] returns) the window is given to the
//! [`Gradient`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::gradient::{Gradient, GradientConfig, Window};

/// How the limit is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Always this many.
    Fixed(usize),
    /// Following the latency ([`Gradient`]).
    Adaptive(GradientConfig),
}

/// The tuning of a [`Limiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// How the limit is set.
    pub limit: Limit,
    /// How often the limit is set again: long enough for a window's mean
    /// to mean something, short enough to follow a burst.
    pub window: Duration,
    /// Returns a window needs before it is judged.
    pub min_samples: u32,
}

impl LimiterConfig {
    /// An adaptive limit with windows of 100 ms and at least 10 returns.
    pub fn adaptive(gradient: GradientConfig) -> Self {
        LimiterConfig {
            limit: Limit::Adaptive(gradient),
            window: Duration::from_millis(100),
            min_samples: 10,
        }
    }

    /// A fixed limit.
    pub fn fixed(limit: usize) -> Self {
        LimiterConfig {
            limit: Limit::Fixed(limit.max(1)),
            window: Duration::from_millis(100),
            min_samples: 10,
        }
    }
}

/// Whether the runtime's workers were busy nearly all of a window.
pub struct Saturation(Box<dyn FnMut(Duration) -> bool + Send>);

impl std::fmt::Debug for Saturation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Saturation")
    }
}

/// The share of the workers' time spent running tasks over which the
/// runtime counts as saturated (the rest is spent waiting for, and
/// reading, I/O events, which tokio does not count as busy).
pub const SATURATED: f64 = 0.8;

impl Saturation {
    /// From the current tokio runtime's metrics: its workers busy at least
    /// [`SATURATED`] of the window. Never saturated outside a runtime.
    pub fn runtime() -> Self {
        fn busy() -> Option<(Duration, usize)> {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let metrics = handle.metrics();
            let workers = metrics.num_workers();
            let busy = (0..workers)
                .map(|w| metrics.worker_total_busy_duration(w))
                .sum();
            Some((busy, workers))
        }
        let mut before = busy().map(|(b, _)| b);
        Saturation(Box::new(move |elapsed| {
            let now = busy();
            let saturated = match (now, before) {
                (Some((busy, workers)), Some(then)) => {
                    let spent = busy.saturating_sub(then).as_secs_f64();
                    spent >= SATURATED * elapsed.as_secs_f64() * workers.max(1) as f64
                }
                _ => false,
            };
            before = now.map(|(b, _)| b);
            saturated
        }))
    }

    /// Never saturated.
    pub fn never() -> Self {
        Saturation(Box::new(|_| false))
    }

    /// Saturated when `probe` says so, given the window's length.
    pub fn custom(probe: impl FnMut(Duration) -> bool + Send + 'static) -> Self {
        Saturation(Box::new(probe))
    }
}

/// A class of work, as registered with [`Limiter::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassId(usize);

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No place, and no room to wait for one (or no wait allowed).
    Full,
    /// No place within the wait given.
    Waited(Duration),
}

impl Refused {
    /// The reason as a metric label: `full` or `queue_timeout`.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Full => "full",
            Refused::Waited(_) => "queue_timeout",
        }
    }
}

/// The gauges a limiter keeps, set at the end of every window.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// The limit.
    pub limit: metrics::Gauge,
    /// Waiting for a place.
    pub queued: metrics::Gauge,
    /// In flight in the `default` class.
    pub in_flight: metrics::Gauge,
}

impl Gauges {
    /// Gauges that record nothing.
    pub fn none() -> Self {
        Gauges {
            limit: metrics::Gauge::noop(),
            queued: metrics::Gauge::noop(),
            in_flight: metrics::Gauge::noop(),
        }
    }
}

/// What a limiter holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The limit.
    pub limit: usize,
    /// In flight, all classes.
    pub in_flight: usize,
    /// Waiting.
    pub queued: usize,
    /// In flight by class, in the order they were registered.
    pub classes: Vec<(&'static str, usize)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    window: Duration,
    min_samples: u32,
    gauges: Gauges,
}

#[derive(Debug)]
struct Class {
    name: &'static str,
    share: u8,
    in_flight: usize,
    /// Places kept for it: its share of the limit, rounded up.
    kept: usize,
    waiters: VecDeque<oneshot::Sender<Permit>>,
    gauge: metrics::Gauge,
}

#[derive(Debug)]
struct State {
    limit: usize,
    gradient: Option<Gradient>,
    classes: Vec<Class>,
    in_flight: usize,
    queued: usize,
    /// Whether a request that finds no place is refused without waiting:
    /// in the last window, most waiters waited in vain.
    standing: bool,
    window: Accumulated,
    saturation: Saturation,
}

#[derive(Debug)]
struct Accumulated {
    start: Instant,
    samples: u32,
    latency_sum: Duration,
    peak: usize,
    turned_away: u64,
    /// Requests that waited for a place, and those of them refused.
    waited: u32,
    waited_in_vain: u32,
}

/// A place in flight; given back when dropped, its latency measured from
/// its admission.
#[derive(Debug)]
pub struct Permit {
    limiter: Option<Arc<Limiter>>,
    class: usize,
    admitted: Instant,
}

impl Permit {
    /// The class it was given to.
    pub fn class(&self) -> ClassId {
        ClassId(self.class)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            limiter.release(self.class, Some(self.admitted));
        }
    }
}

impl Limiter {
    /// A limiter with one class, `default`, keeping no share, and none
    /// in flight.
    pub fn new(config: LimiterConfig, saturation: Saturation, gauges: Gauges) -> Arc<Self> {
        let (limit, gradient) = match config.limit {
            Limit::Fixed(n) => (n.max(1), None),
            Limit::Adaptive(g) => {
                let gradient = Gradient::new(g);
                (gradient.limit(), Some(gradient))
            }
        };
        gauges.limit.set(limit as f64);
        let default_in_flight = gauges.in_flight.clone();
        let limiter = Arc::new(Limiter {
            state: Mutex::new(State {
                limit,
                gradient,
                classes: Vec::new(),
                in_flight: 0,
                queued: 0,
                standing: false,
                window: Accumulated {
                    start: Instant::now(),
                    samples: 0,
                    latency_sum: Duration::ZERO,
                    peak: 0,
                    turned_away: 0,
                    waited: 0,
                    waited_in_vain: 0,
                },
                saturation,
            }),
            window: config.window,
            min_samples: config.min_samples.max(1),
            gauges,
        });
        limiter.class("default", 0, default_in_flight);
        limiter
    }

    /// The class named `name`, registered with `share` percent of the
    /// limit kept for it (and `in_flight`, a gauge of its places in use)
    /// unless it exists. The shares of all classes add up to at most 100:
    /// a share past that is cut to what is left, with a warning.
    pub fn class(&self, name: &'static str, share: u8, in_flight: metrics::Gauge) -> ClassId {
        let mut s = self.state();
        if let Some(i) = s.classes.iter().position(|c| c.name == name) {
            return ClassId(i);
        }
        let taken: u32 = s.classes.iter().map(|c| u32::from(c.share)).sum();
        let left = 100u32.saturating_sub(taken) as u8;
        let share = if share.min(100) > left {
            tracing::warn!(
                class = name,
                share,
                left,
                "the shares of the limit's classes exceed 100%: this one is cut to what is left"
            );
            left
        } else {
            share.min(100)
        };
        let limit = s.limit;
        s.classes.push(Class {
            name,
            share,
            in_flight: 0,
            kept: kept(share, limit),
            waiters: VecDeque::new(),
            gauge: in_flight,
        });
        ClassId(s.classes.len() - 1)
    }

    /// The `default` class.
    pub fn default_class(&self) -> ClassId {
        ClassId(0)
    }

    /// A place for `class` now, or [`Refused::Full`].
    pub fn try_acquire(self: &Arc<Self>, class: ClassId) -> Result<Permit, Refused> {
        let mut s = self.state();
        if s.admits(class.0) {
            return Ok(self.admit(&mut s, class.0));
        }
        s.window.turned_away += 1;
        Err(Refused::Full)
    }

    /// A place for `class`, waiting at most `wait` for one.
    pub async fn acquire(
        self: &Arc<Self>,
        class: ClassId,
        wait: Duration,
    ) -> Result<Permit, Refused> {
        let mut rx = {
            let mut s = self.state();
            if s.admits(class.0) {
                return Ok(self.admit(&mut s, class.0));
            }
            s.window.turned_away += 1;
            if wait.is_zero() || s.queued >= s.limit || s.standing {
                return Err(Refused::Full);
            }
            s.window.waited += 1;
            let (tx, rx) = oneshot::channel();
            s.classes[class.0].waiters.push_back(tx);
            s.queued += 1;
            rx
        };
        if let Ok(Ok(permit)) = tokio::time::timeout(wait, &mut rx).await {
            return Ok(permit);
        }
        // A place given as the wait ran out is taken rather than lost.
        rx.close();
        if let Ok(permit) = rx.try_recv() {
            return Ok(permit);
        }
        let mut s = self.state();
        let waiters = &mut s.classes[class.0].waiters;
        let before = waiters.len();
        waiters.retain(|tx| !tx.is_closed());
        let gone = before - waiters.len();
        s.queued -= gone;
        s.window.waited_in_vain += 1;
        Err(Refused::Waited(wait))
    }

    /// In flight now, and the limit.
    pub fn usage(&self) -> (usize, usize) {
        let s = self.state();
        (s.in_flight, s.limit)
    }

    /// What the limiter holds now.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        Snapshot {
            limit: s.limit,
            in_flight: s.in_flight,
            queued: s.queued,
            classes: s.classes.iter().map(|c| (c.name, c.in_flight)).collect(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Counters consistent after every statement: usable after a panic
        // elsewhere (parking_lot does not poison).
        self.state.lock()
    }

    fn admit(self: &Arc<Self>, s: &mut State, class: usize) -> Permit {
        s.in_flight += 1;
        s.classes[class].in_flight += 1;
        s.window.peak = s.window.peak.max(s.in_flight);
        Permit {
            limiter: Some(self.clone()),
            class,
            admitted: Instant::now(),
        }
    }

    fn release(self: &Arc<Self>, class: usize, admitted: Option<Instant>) {
        let now = Instant::now();
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.classes[class].in_flight = s.classes[class].in_flight.saturating_sub(1);
        if let Some(admitted) = admitted {
            s.window.samples += 1;
            s.window.latency_sum += now.saturating_duration_since(admitted);
        }
        let elapsed = now.saturating_duration_since(s.window.start);
        if elapsed >= self.window && s.window.samples >= self.min_samples {
            self.end_window(&mut s, now, elapsed);
        }
        while s.queued > 0 {
            let Some((tx, class)) = s.next_waiter() else {
                return;
            };
            let permit = self.admit(&mut s, class);
            drop(s);
            let Err(mut permit) = tx.send(permit) else {
                s = self.state();
                continue;
            };
            // The waiter left as the place was given: take it back
            // without a latency, and offer it to the next.
            permit.limiter = None;
            s = self.state();
            s.in_flight = s.in_flight.saturating_sub(1);
            s.classes[class].in_flight = s.classes[class].in_flight.saturating_sub(1);
        }
    }

    fn end_window(&self, s: &mut State, now: Instant, elapsed: Duration) {
        let saturated = (s.saturation.0)(elapsed);
        let window = Window {
            samples: s.window.samples,
            latency_sum: s.window.latency_sum,
            peak_in_flight: s.window.peak,
            turned_away: s.window.turned_away,
            saturated,
        };
        if let Some(gradient) = &mut s.gradient {
            let limit = gradient.update(&window);
            if limit != s.limit {
                tracing::debug!(from = s.limit, to = limit, "concurrency limit set");
                s.limit = limit;
                for class in &mut s.classes {
                    class.kept = kept(class.share, limit);
                }
            }
        }
        let (waited, in_vain) = (s.window.waited, s.window.waited_in_vain);
        s.standing = in_vain >= 2 && in_vain * 2 > waited;
        self.gauges.limit.set(s.limit as f64);
        self.gauges.queued.set(s.queued as f64);
        for class in &s.classes {
            class.gauge.set(class.in_flight as f64);
        }
        s.window = Accumulated {
            start: now,
            samples: 0,
            latency_sum: Duration::ZERO,
            peak: s.in_flight,
            turned_away: 0,
            waited: 0,
            waited_in_vain: 0,
        };
    }
}

/// `share` percent of `limit`, rounded up.
fn kept(share: u8, limit: usize) -> usize {
    (limit * usize::from(share)).div_ceil(100)
}

impl State {
    /// Whether `class` may take a place now: those in flight and those
    /// kept unused for the other classes leave one under the limit.
    fn admits(&self, class: usize) -> bool {
        if !self.classes[class].waiters.is_empty() {
            return false;
        }
        self.room_for(class)
    }

    fn room_for(&self, class: usize) -> bool {
        let kept_for_others: usize = self
            .classes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != class)
            .map(|(_, c)| c.kept.saturating_sub(c.in_flight))
            .sum();
        self.in_flight + kept_for_others < self.limit
    }

    /// The next waiter to give a place to, if one may have it: the class
    /// furthest below its share first (by places in flight beyond those
    /// kept for it), then in arrival order. Waiters that left are dropped.
    fn next_waiter(&mut self) -> Option<(oneshot::Sender<Permit>, usize)> {
        loop {
            let class = (0..self.classes.len())
                .filter(|&i| !self.classes[i].waiters.is_empty() && self.room_for(i))
                .min_by_key(|&i| {
                    let c = &self.classes[i];
                    c.in_flight as isize - c.kept as isize
                })?;
            let tx = self.classes[class].waiters.pop_front()?;
            self.queued -= 1;
            if !tx.is_closed() {
                return Some((tx, class));
            }
        }
    }
}

#[cfg(test)]
mod tests;
