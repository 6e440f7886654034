//! A circuit breaker per upstream.
//!
//! Why: when a service is down, waiting for each call to time out costs the
//! client its latency budget and keeps sockets and workers busy for nothing.
//! After `failure_threshold` consecutive failures the circuit opens and calls
//! fail at once; after `open_for` one probe is let through (half-open): its
//! success closes the circuit, its failure opens it again. Consecutive
//! failures rather than a failure rate keep the state tiny and the decision
//! allocation-free; the threshold is per upstream.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tuning of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The state of a circuit, as `/readyz` and the metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// One probe is being let through.
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
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A permission to make one call, settled with [`Permit::record`]. A permit
/// dropped unsettled (its caller gave up, e.g. at a section deadline) frees
/// the half-open probe slot so the circuit cannot get stuck half-open.
#[derive(Debug)]
#[must_use = "a permit must be settled with record()"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Settles the permit with the call's outcome; returns the state after.
    pub fn record(mut self, success: bool) -> CircuitState {
        self.settled = true;
        self.breaker.record(self.probe, success)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            let mut inner = self.breaker.lock();
            if let Inner::HalfOpen { probing } = &mut *inner {
                *probing = false;
            }
        }
    }
}

/// One upstream's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// The current state (an open circuit past its time reads half-open).
    pub fn state(&self) -> CircuitState {
        match &*self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if Instant::now() >= *until => CircuitState::HalfOpen,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to make a call: `None` while the circuit is open (or while the
    /// single half-open probe is in flight).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut inner = self.lock();
        let probe = match &mut *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } => {
                if Instant::now() < *until {
                    return None;
                }
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::HalfOpen { probing } => {
                if *probing {
                    return None;
                }
                *probing = true;
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn record(&self, probe: bool, success: bool) -> CircuitState {
        let mut inner = self.lock();
        let open = || Inner::Open {
            until: Instant::now() + self.config.open_for,
        };
        match (&mut *inner, success) {
            (Inner::Closed { failures }, true) => *failures = 0,
            (Inner::Closed { failures }, false) => {
                *failures += 1;
                if *failures >= self.config.failure_threshold {
                    *inner = open();
                }
            }
            (Inner::HalfOpen { .. }, true) if probe => *inner = Inner::Closed { failures: 0 },
            (Inner::HalfOpen { .. }, false) if probe => *inner = open(),
            // A call admitted before the circuit opened finishing late does
            // not change the new state.
            _ => {}
        }
        match &*inner {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for,
        })
    }

    fn fail(b: &CircuitBreaker) -> CircuitState {
        b.try_acquire().expect("admitted").record(false)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        fail(&b);
        fail(&b);
        let p = b.try_acquire().expect("admitted");
        assert_eq!(
            p.record(true),
            CircuitState::Closed,
            "a success resets the count"
        );
        fail(&b);
        fail(&b);
        assert_eq!(fail(&b), CircuitState::Open);
        assert!(b.try_acquire().is_none(), "open: fail fast");
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            fail(&b);
        }
        let probe = b.try_acquire().expect("the probe");
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        assert_eq!(
            probe.record(false),
            CircuitState::Open,
            "a failed probe reopens"
        );
        let probe = b.try_acquire().expect("the next probe");
        assert_eq!(
            probe.record(true),
            CircuitState::Closed,
            "a good probe closes"
        );
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            fail(&b);
        }
        drop(b.try_acquire().expect("the probe"));
        assert!(b.try_acquire().is_some(), "another probe may go");
    }
}
