//! Jittered exponential backoff for reconnecting long-lived streams.
//!
//! Why jitter: when an upstream restarts, every replica's streams drop at
//! the same instant; without jitter they would all come back at the same
//! instants too, a thundering herd on a service that just started. Each
//! delay is drawn from the upper half of the current step ("equal jitter"),
//! so reconnects spread out but never come sooner than half the step.
//!
//! ```
//! use std::time::Duration;
//! use bff_upstream::Backoff;
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
//! let first = backoff.next_delay();
//! assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
//! let second = backoff.next_delay();
//! assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
//! backoff.reset();
//! assert!(backoff.next_delay() <= Duration::from_millis(100));
//! ```

use std::time::Duration;

use rand::Rng;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps from `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.max(Duration::from_millis(1));
        Backoff {
            first,
            max: max.max(first),
            step: first,
        }
    }

    /// The next delay, then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// Back to the first step (after a connection that worked).
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}
