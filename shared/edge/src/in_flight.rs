//! The bound on API requests in flight (`BFF_MAX_IN_FLIGHT`), sized to the
//! load it sees.
//!
//! A fixed bound has to choose between two loads. Against slow upstreams a
//! BFF needs many requests in flight (rate × upstream latency: 3,000/s
//! against 50 ms upstreams is 150), so the bound must be high; but a bound
//! far above what the load needs lets a burst start more requests than the
//! CPU finishes, and every request started makes the others dearer (more
//! upstream connections opened, more memory touched): measured on one CPU
//! at 3,000/s against fast upstreams, a bound of 64 let 9 runs in 20 see
//! their p99 grow to 5–280 ms, while any bound from 8 to 32 kept it within
//! a millisecond of the I/O floor's (BENCHMARKS.md, sixth step).
//!
//! So the configured bound is a ceiling, and the bound in use follows the
//! load: every [`WINDOW`], it becomes [`HEADROOM`] times the mean number of
//! requests that were in flight, within a floor ([`FLOOR_PER_CPU`], or the
//! ceiling when lower) and the ceiling. It is not raised while the runtime
//! was saturated ([`SATURATED`] of its workers' time busy): requests waiting
//! because the CPU is full are what the bound is for, and admitting more of
//! them would only make each dearer. It does not read latency: a BFF's
//! latency is mostly its upstreams', and a bound that shrinks when they slow
//! down (as latency-gradient limits do) would starve a BFF whose upstream
//! stalls; here a stalled upstream holds more requests in flight, and the
//! bound grows with them, up to the ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bff_telemetry::names;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often the bound is sized again: long enough to average a burst
/// away, short enough to follow a change of load within a fraction of a
/// second.
pub const WINDOW: Duration = Duration::from_millis(100);

/// The bound is this many times the mean number of requests in flight: room
/// for arrivals to bunch up (Poisson arrivals at a mean of 6 in flight
/// exceed 24 with a probability under 10⁻⁶) without queueing.
pub const HEADROOM: f64 = 4.0;

/// The least the bound becomes, per CPU: a page that opens with a dozen
/// calls at once is not made to queue by a BFF that was idle.
pub const FLOOR_PER_CPU: usize = 16;

/// The share of the runtime's workers' time spent running tasks over which
/// the runtime counts as saturated (the rest is spent waiting for, and
/// reading, I/O events, which tokio does not count as busy).
pub const SATURATED: f64 = 0.8;

/// The bound, shared by every API route.
#[derive(Debug)]
pub(crate) struct InFlight {
    places: Arc<Semaphore>,
    ceiling: usize,
    floor: usize,
    sizing: Mutex<Sizing>,
    /// `bff.server.in_flight.limit`: the bound in use.
    gauge: metrics::Gauge,
}

/// What the bound is now and what the current window has seen.
#[derive(Debug)]
struct Sizing {
    /// The bound in use.
    limit: usize,
    /// Places to take out of circulation as the requests holding them end:
    /// the bound was lowered while they were taken.
    owed: usize,
    /// Requests holding a place.
    in_flight: usize,
    /// When `in_flight` last changed.
    changed: Instant,
    /// Requests in flight integrated over the window (request-seconds).
    area: f64,
    /// When the window began, and the runtime's busy time then.
    window_start: Instant,
    busy_at_start: Option<Duration>,
}

/// A request waited its whole patience without getting a place (the
/// duration it waited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GaveUp(pub(crate) Duration);

/// A request's place among those in flight; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    permit: Option<OwnedSemaphorePermit>,
    bound: Arc<InFlight>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.bound.leave(permit);
        }
    }
}

/// Time the current runtime's workers have spent running tasks, summed, and
/// how many workers there are (`None` outside a runtime).
fn runtime_busy() -> Option<(Duration, usize)> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let metrics = handle.metrics();
    let workers = metrics.num_workers();
    let busy = (0..workers)
        .map(|w| metrics.worker_total_busy_duration(w))
        .sum();
    Some((busy, workers))
}

impl InFlight {
    /// A bound of at most `ceiling` requests, never sized below
    /// [`FLOOR_PER_CPU`] per CPU (nor above `ceiling`); it starts at the
    /// ceiling.
    pub(crate) fn new(ceiling: usize) -> Arc<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_floor(ceiling, FLOOR_PER_CPU.saturating_mul(cpus))
    }

    fn with_floor(ceiling: usize, floor: usize) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        let now = Instant::now();
        let gauge = metrics::gauge!(names::SERVER_IN_FLIGHT_LIMIT);
        gauge.set(ceiling as f64);
        Arc::new(InFlight {
            places: Arc::new(Semaphore::new(ceiling)),
            ceiling,
            floor: floor.clamp(1, ceiling),
            sizing: Mutex::new(Sizing {
                limit: ceiling,
                owed: 0,
                in_flight: 0,
                changed: now,
                area: 0.0,
                window_start: now,
                busy_at_start: runtime_busy().map(|(busy, _)| busy),
            }),
            gauge,
        })
    }

    /// Waits, in arrival order, for a place, for at most `patience`: a
    /// request that could not even start within it would be answered after
    /// its client stopped waiting (`Err(GaveUp)`).
    pub(crate) async fn enter(self: &Arc<Self>, patience: Duration) -> Result<Place, GaveUp> {
        // A place is free only when nobody waits for one (the semaphore
        // hands returned places to waiters first): taking it is fair.
        let permit = match self.places.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => self.wait(patience).await?,
        };
        if permit.is_some() {
            self.account(|sizing| sizing.in_flight += 1);
        }
        Ok(Place {
            permit,
            bound: self.clone(),
        })
    }

    /// Waits for a place, sizing the bound again at the end of each window
    /// meanwhile: when every request in flight is waiting on a slow
    /// upstream, none enters or leaves to do it, and the bound must still
    /// grow for the ones queued behind them.
    async fn wait(
        self: &Arc<Self>,
        patience: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, GaveUp> {
        let give_up = Instant::now() + patience;
        let acquire = self.places.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let window_end = self.sizing().window_start + WINDOW;
            tokio::select! {
                biased;
                // The semaphore is never closed; were it, requests would go
                // on unbounded rather than fail.
                permit = &mut acquire => return Ok(permit.ok()),
                () = tokio::time::sleep_until(window_end.min(give_up).into()) => {
                    if Instant::now() >= give_up {
                        return Err(GaveUp(patience));
                    }
                    self.account(|_| {});
                }
            }
        }
    }

    fn leave(&self, permit: OwnedSemaphorePermit) {
        self.account(|sizing| {
            sizing.in_flight = sizing.in_flight.saturating_sub(1);
            if sizing.owed > 0 {
                sizing.owed -= 1;
                permit.forget();
            } else {
                drop(permit);
            }
        });
    }

    /// Brings the window's integral up to now, applies `change`, and sizes
    /// the bound again if the window is over.
    fn account(&self, change: impl FnOnce(&mut Sizing)) {
        let now = Instant::now();
        let mut sizing = self.sizing();
        sizing.advance(now);
        change(&mut sizing);
        self.maybe_resize(&mut sizing, now);
    }

    /// The bound in use now.
    #[cfg(test)]
    fn limit(&self) -> usize {
        self.sizing().limit
    }

    fn sizing(&self) -> parking_lot::MutexGuard<'_, Sizing> {
        // The sizing is a handful of counters, consistent after every
        // statement: a panic elsewhere while it was held leaves it usable.
        self.sizing.lock()
    }

    fn maybe_resize(&self, sizing: &mut Sizing, now: Instant) {
        let elapsed = now.saturating_duration_since(sizing.window_start);
        if elapsed < WINDOW {
            return;
        }
        let busy = runtime_busy();
        let saturated = match (busy, sizing.busy_at_start) {
            (Some((busy, workers)), Some(before)) => {
                let spent = busy.saturating_sub(before).as_secs_f64();
                spent >= SATURATED * elapsed.as_secs_f64() * workers.max(1) as f64
            }
            _ => false,
        };
        let mean = sizing.area / elapsed.as_secs_f64();
        let target = self.target(mean);
        self.resize(sizing, target, saturated);
        sizing.area = 0.0;
        sizing.window_start = now;
        sizing.busy_at_start = busy.map(|(busy, _)| busy);
    }

    /// [`HEADROOM`] times `mean` requests in flight, within the floor and
    /// the ceiling.
    fn target(&self, mean: f64) -> usize {
        let wanted = (mean * HEADROOM).ceil();
        // `as` saturates a float too large for usize; the clamp bounds it.
        (wanted as usize).clamp(self.floor, self.ceiling)
    }

    fn resize(&self, sizing: &mut Sizing, target: usize, saturated: bool) {
        if target > sizing.limit && !saturated {
            let up = target - sizing.limit;
            let cancelled = up.min(sizing.owed);
            sizing.owed -= cancelled;
            self.places.add_permits(up - cancelled);
            tracing::debug!(from = sizing.limit, to = target, "in-flight bound raised");
            sizing.limit = target;
        } else if target < sizing.limit {
            let down = sizing.limit - target;
            let taken_out = self.places.forget_permits(down);
            sizing.owed += down - taken_out;
            tracing::debug!(from = sizing.limit, to = target, "in-flight bound lowered");
            sizing.limit = target;
        } else {
            return;
        }
        self.gauge.set(sizing.limit as f64);
    }
}

impl Sizing {
    /// Adds the requests in flight since the last change to the window's
    /// integral.
    fn advance(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.changed);
        self.area += self.in_flight as f64 * since.as_secs_f64();
        self.changed = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patience no test runs out of.
    const PATIENT: Duration = Duration::from_secs(60);

    /// Runs `bound`'s resizing as if a window had passed with `mean`
    /// requests in flight on average and the runtime `saturated` or not.
    fn window(bound: &InFlight, mean: f64, saturated: bool) {
        let mut sizing = bound.sizing();
        let target = bound.target(mean);
        bound.resize(&mut sizing, target, saturated);
    }

    #[test]
    fn the_bound_follows_the_mean_in_flight_with_headroom_within_floor_and_ceiling() {
        let bound = InFlight::with_floor(64, 8);
        assert_eq!(bound.limit(), 64, "it starts at the ceiling");
        window(&bound, 5.0, false);
        assert_eq!(bound.limit(), 20);
        window(&bound, 0.1, false);
        assert_eq!(bound.limit(), 8, "never below the floor");
        window(&bound, 12.0, false);
        assert_eq!(bound.limit(), 48);
        window(&bound, 500.0, false);
        assert_eq!(bound.limit(), 64, "never above the ceiling");
        assert_eq!(bound.places.available_permits(), 64);
    }

    #[test]
    fn a_saturated_runtime_does_not_raise_the_bound_but_may_lower_it() {
        let bound = InFlight::with_floor(64, 8);
        window(&bound, 4.0, false);
        assert_eq!(bound.limit(), 16);
        window(&bound, 16.0, true);
        assert_eq!(bound.limit(), 16, "held while saturated");
        window(&bound, 16.0, false);
        assert_eq!(bound.limit(), 64, "raised once the CPU has room");
        window(&bound, 3.0, true);
        assert_eq!(bound.limit(), 12, "lowered even when saturated");
    }

    #[test]
    fn a_floor_above_the_ceiling_is_the_ceiling() {
        let bound = InFlight::with_floor(2, 16);
        window(&bound, 0.0, false);
        assert_eq!(bound.limit(), 2);
        window(&bound, 100.0, false);
        assert_eq!(bound.limit(), 2);
    }

    #[tokio::test]
    async fn places_taken_when_the_bound_is_lowered_are_retired_as_they_come_back() {
        let bound = InFlight::with_floor(4, 1);
        let mut held: Vec<Place> = Vec::new();
        for _ in 0..4 {
            held.push(bound.enter(PATIENT).await.expect("a free place"));
        }
        // Four taken, the bound lowered to two: two of them are owed.
        window(&bound, 0.5, false);
        assert_eq!(bound.limit(), 2);
        held.pop();
        held.pop();
        assert_eq!(
            bound.places.available_permits(),
            0,
            "the first two back are retired: two are still in flight"
        );
        let waiting = bound.enter(Duration::from_millis(50)).await;
        assert_eq!(
            waiting.err(),
            Some(GaveUp(Duration::from_millis(50))),
            "a third request waits, and gives up"
        );
        held.pop();
        assert_eq!(bound.places.available_permits(), 1);
        let third = bound.enter(Duration::from_millis(50)).await;
        assert!(third.is_ok(), "one place free under the bound of two");
        drop(third);
        drop(held);
        assert_eq!(bound.places.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_takes_no_place_from_those_behind_it() {
        let bound = InFlight::with_floor(1, 1);
        let first = bound.enter(PATIENT).await.expect("a free place");
        let started = Instant::now();
        let impatient = bound.enter(Duration::from_millis(30)).await;
        assert!(impatient.is_err(), "the bound of one is taken");
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "it waited its patience"
        );
        let behind = tokio::spawn({
            let bound = bound.clone();
            async move { bound.enter(PATIENT).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let entered = tokio::time::timeout(Duration::from_secs(1), behind).await;
        assert!(
            matches!(entered, Ok(Ok(Ok(())))),
            "the place freed goes to the request still waiting: {entered:?}"
        );
        assert_eq!(bound.places.available_permits(), 1);
        assert_eq!(bound.sizing().in_flight, 0);
    }

    #[tokio::test]
    async fn raising_the_bound_cancels_what_is_owed_before_adding_places() {
        let bound = InFlight::with_floor(8, 1);
        let mut held: Vec<Place> = Vec::new();
        for _ in 0..8 {
            held.push(bound.enter(PATIENT).await.expect("a free place"));
        }
        window(&bound, 0.5, false); // to 2: six owed
        window(&bound, 1.0, false); // to 4: two owed
        held.clear();
        assert_eq!(bound.places.available_permits(), 4);
        assert_eq!(bound.limit(), 4);
    }

    #[tokio::test]
    async fn the_window_measures_the_mean_in_flight() {
        let bound = InFlight::with_floor(64, 1);
        let start = Instant::now();
        {
            let mut sizing = bound.sizing();
            sizing.window_start = start;
            sizing.changed = start;
            // Two requests for the whole window.
            sizing.in_flight = 2;
            sizing.advance(start + WINDOW);
            sizing.in_flight = 0;
            bound.maybe_resize(&mut sizing, start + WINDOW);
        }
        assert_eq!(bound.limit(), 8, "mean 2 in flight, four times that");
    }
}
