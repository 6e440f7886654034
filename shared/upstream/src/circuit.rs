//! A circuit breaker per upstream, judged on rates over a sliding window.
//!
//! Why: when a service is down *or slow*, waiting for each call to time out
//! costs the client its latency budget and keeps sockets and workers busy
//! for nothing. The breaker keeps the outcomes of the last `window` calls;
//! once at least `minimum_calls` are in, it opens when the share of failed
//! calls reaches `failure_rate` percent or the share of slow calls (slower
//! than `slow_call`, failed or not) reaches `slow_rate` percent — the
//! semantics of resilience4j, which Apollo Router and Hive Router follow.
//! While open, calls fail at once. After `open_for` it lets
//! `half_open_calls` probes through: all good closes it, any bad one opens
//! it again.
//!
//! A [`Permit`] is the right to make one call. It records its outcome when
//! settled, and **when dropped unsettled it records a timed-out call**: the
//! caller gave up waiting (a section or request deadline), which is exactly
//! the hang a breaker must learn about. That, and a slow-call rate, is why
//! this breaker is our own rather than a crate's: the tower-shaped breakers
//! we looked at (tower-resilience) count only the outcomes of futures that
//! complete, so a call cut off at a section deadline would never count.
//!
//! ```
//! # use std::time::Duration;
//! use bff_upstream::{BreakerConfig, CircuitBreaker, CircuitState};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let breaker = CircuitBreaker::new("demo", BreakerConfig { minimum_calls: 2, ..BreakerConfig::default() });
//! for _ in 0..2 {
//!     let permit = breaker.try_acquire().expect("closed");
//!     drop(permit); // abandoned at a deadline: counts as a timeout
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! assert!(breaker.try_acquire().is_none(), "fails fast");
//! # });
//! ```

use std::sync::Arc;
use std::time::Duration;

use bff_telemetry::names;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Tuning of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// How many of the latest calls are judged.
    pub window: u32,
    /// Calls needed in the window before any rate is judged.
    pub minimum_calls: u32,
    /// Failed calls, in percent of the window, that open the circuit.
    pub failure_rate: u8,
    /// A call slower than this is slow.
    pub slow_call: Duration,
    /// Slow calls, in percent of the window, that open the circuit.
    pub slow_rate: u8,
    /// How long the circuit stays open before probes.
    pub open_for: Duration,
    /// Probes let through while half-open.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            minimum_calls: 10,
            failure_rate: 50,
            slow_call: Duration::from_secs(1),
            slow_rate: 80,
            open_for: Duration::from_secs(10),
            half_open_calls: 3,
        }
    }
}

/// The state of a circuit, as `/readyz` and the metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Probes are being let through.
    HalfOpen,
    /// Calls fail at once.
    Open,
}

impl CircuitState {
    /// `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// The window: one byte per call (bit 0 failed, bit 1 slow) in a ring.
#[derive(Debug)]
struct Window {
    ring: Vec<u8>,
    next: usize,
    len: u32,
    failed: u32,
    slow: u32,
}

impl Window {
    fn new(size: u32) -> Self {
        Window {
            ring: vec![0; size.max(1) as usize],
            next: 0,
            len: 0,
            failed: 0,
            slow: 0,
        }
    }

    fn push(&mut self, failed: bool, slow: bool) {
        if self.len as usize == self.ring.len() {
            let old = self.ring[self.next];
            self.failed -= u32::from(old & 1);
            self.slow -= u32::from(old >> 1);
        } else {
            self.len += 1;
        }
        self.ring[self.next] = u8::from(failed) | (u8::from(slow) << 1);
        self.failed += u32::from(failed);
        self.slow += u32::from(slow);
        self.next = (self.next + 1) % self.ring.len();
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.failed = 0;
        self.slow = 0;
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    window: Window,
    /// Bumped on every transition, so a call admitted in an earlier state
    /// cannot settle the current one.
    generation: u64,
}

/// One upstream's breaker. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct CircuitBreaker {
    upstream: &'static str,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// The right to make one call; see the module documentation.
#[derive(Debug)]
#[must_use = "a permit records its call when settled or dropped"]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    generation: u64,
    started: Instant,
    settled: bool,
}

impl Permit {
    /// Settles the permit: `failed` says whether the call's outcome counts
    /// against the upstream; its duration decides whether it was slow.
    /// Returns the state after.
    pub fn record(mut self, failed: bool) -> CircuitState {
        self.settled = true;
        let slow = self.started.elapsed() >= self.breaker.config.slow_call;
        self.breaker
            .record(self.probe, self.generation, failed, slow)
    }

    /// Settles the permit without judging the upstream (the call was never
    /// made, e.g. shed below the breaker). A probe slot is given back.
    pub fn forget(mut self) {
        self.settled = true;
        if self.probe {
            let mut guard = self.breaker.lock();
            let inner = &mut *guard;
            if let (State::HalfOpen { admitted, .. }, true) =
                (&mut inner.state, inner.generation == self.generation)
            {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            // Abandoned: the caller stopped waiting. A timeout, and slow.
            self.breaker.record(self.probe, self.generation, true, true);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker for `upstream`.
    pub fn new(upstream: &'static str, config: BreakerConfig) -> Arc<Self> {
        metrics::gauge!(names::CIRCUIT_STATE, "upstream" => upstream)
            .set(CircuitState::Closed.gauge());
        Arc::new(CircuitBreaker {
            upstream,
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: Window::new(config.window),
                generation: 0,
            }),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state (an open circuit past its time reads half-open).
    pub fn state(&self) -> CircuitState {
        match &self.lock().state {
            State::Closed => CircuitState::Closed,
            State::Open { until } if Instant::now() >= *until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Asks to make a call: `None` while the circuit is open, or while every
    /// half-open probe is already in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut inner = self.lock();
        let probe = match &mut inner.state {
            State::Closed => false,
            State::Open { until } => {
                if Instant::now() < *until {
                    return None;
                }
                self.transition(
                    &mut inner,
                    State::HalfOpen {
                        admitted: 1,
                        succeeded: 0,
                    },
                );
                true
            }
            State::HalfOpen { admitted, .. } => {
                if *admitted >= self.config.half_open_calls.max(1) {
                    return None;
                }
                *admitted += 1;
                true
            }
        };
        Some(Permit {
            breaker: self.clone(),
            probe,
            generation: inner.generation,
            started: Instant::now(),
            settled: false,
        })
    }

    fn transition(&self, inner: &mut Inner, to: State) {
        inner.state = to;
        inner.generation += 1;
        let state = match inner.state {
            State::Closed => {
                inner.window.clear();
                CircuitState::Closed
            }
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        };
        metrics::gauge!(names::CIRCUIT_STATE, "upstream" => self.upstream).set(state.gauge());
        metrics::counter!(names::CIRCUIT_TRANSITIONS, "upstream" => self.upstream, "state" => state.as_str())
            .increment(1);
        match state {
            CircuitState::Open => tracing::warn!(
                upstream = self.upstream,
                failed = inner.window.failed,
                slow = inner.window.slow,
                calls = inner.window.len,
                "circuit opened"
            ),
            _ => tracing::info!(
                upstream = self.upstream,
                state = state.as_str(),
                "circuit state changed"
            ),
        }
    }

    fn record(&self, probe: bool, generation: u64, failed: bool, slow: bool) -> CircuitState {
        let mut inner = self.lock();
        let current = inner.generation == generation;
        let open = || State::Open {
            until: Instant::now() + self.config.open_for,
        };
        match &mut inner.state {
            State::Closed if current || !probe => {
                inner.window.push(failed, slow);
                let w = &inner.window;
                let judged = w.len >= self.config.minimum_calls.max(1);
                let too_many = |n: u32, pct: u8| n * 100 >= u32::from(pct) * w.len;
                if judged
                    && (too_many(w.failed, self.config.failure_rate)
                        || too_many(w.slow, self.config.slow_rate))
                {
                    self.transition(&mut inner, open());
                }
            }
            State::HalfOpen { succeeded, .. } if probe && current => {
                if failed || slow {
                    self.transition(&mut inner, open());
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.config.half_open_calls.max(1) {
                        self.transition(&mut inner, State::Closed);
                    }
                }
            }
            // A call admitted before the last transition finishing late
            // does not judge the new state.
            _ => {}
        }
        match inner.state {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Arc<CircuitBreaker> {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                window: 10,
                minimum_calls: 4,
                failure_rate: 50,
                slow_call: Duration::from_millis(100),
                slow_rate: 60,
                open_for,
                half_open_calls: 2,
            },
        )
    }

    fn call(b: &Arc<CircuitBreaker>, failed: bool) -> CircuitState {
        b.try_acquire().expect("admitted").record(failed)
    }

    #[tokio::test(start_paused = true)]
    async fn judges_the_failure_rate_only_after_the_minimum() {
        let b = breaker(Duration::from_secs(60));
        assert_eq!(call(&b, true), CircuitState::Closed);
        assert_eq!(
            call(&b, true),
            CircuitState::Closed,
            "2 of 2, below minimum"
        );
        assert_eq!(call(&b, false), CircuitState::Closed);
        assert_eq!(call(&b, true), CircuitState::Open, "3 of 4 failed");
        assert!(b.try_acquire().is_none(), "open: fail fast");
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_majority_keeps_it_closed() {
        let b = breaker(Duration::from_secs(60));
        for i in 0..40 {
            assert_eq!(call(&b, i % 3 == 1), CircuitState::Closed, "call {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_successes_open_it_too() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..3 {
            let p = b.try_acquire().expect("admitted");
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(p.record(false), CircuitState::Closed);
        }
        let p = b.try_acquire().expect("admitted");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(p.record(false), CircuitState::Open, "4 of 4 slow");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_calls_count_as_timeouts() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..4 {
            drop(b.try_acquire().expect("admitted"));
        }
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_close_or_reopen() {
        let b = breaker(Duration::from_secs(5));
        for _ in 0..4 {
            call(&b, true);
        }
        assert!(b.try_acquire().is_none());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let p1 = b.try_acquire().expect("probe 1");
        let p2 = b.try_acquire().expect("probe 2");
        assert!(b.try_acquire().is_none(), "two probes at most");
        assert_eq!(p1.record(false), CircuitState::HalfOpen);
        assert_eq!(p2.record(true), CircuitState::Open, "a bad probe reopens");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(call(&b, false), CircuitState::HalfOpen);
        assert_eq!(call(&b, false), CircuitState::Closed, "good probes close");
        assert_eq!(call(&b, true), CircuitState::Closed, "a fresh window");
    }

    #[tokio::test(start_paused = true)]
    async fn late_calls_do_not_judge_a_new_state() {
        let b = breaker(Duration::from_secs(5));
        let late = b.try_acquire().expect("admitted while closed");
        for _ in 0..4 {
            call(&b, true);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let probe = b.try_acquire().expect("probe");
        assert_eq!(late.record(true), CircuitState::HalfOpen, "ignored");
        probe.forget();
        assert!(
            b.try_acquire().is_some(),
            "a forgotten probe frees its slot"
        );
    }
}
