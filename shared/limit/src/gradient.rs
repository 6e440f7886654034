//! The limit itself: how many may be in flight, from what each window of
//! completed work measured.
//!
//! The family is the latency gradient (Netflix's `Gradient2`, Envoy's
//! adaptive concurrency filter): each window's mean latency is compared
//! with a baseline, the latency the work takes when nothing queues. While
//! they agree the limit grows by its square root per window (fast when
//! small, cautious when large); when the window's latency exceeds the
//! baseline by more than [`GradientConfig::tolerance`], the limit is
//! multiplied by the ratio (at most halved per window). AIMD, the other
//! family, only reacts to drops or timeouts: by the time a BFF's requests
//! time out, its clients have waited seconds, which is what this is for.
//!
//! The baseline is the hard part. Netflix takes a long moving average of
//! the latency, so a lasting change (an upstream that became slower, a mix
//! of requests that became dearer) becomes the new normal, but under a
//! lasting overload the average follows the queueing it should prevent,
//! and the limit creeps up. Envoy measures the latency at a pinned low
//! concurrency every minute, refusing requests while it does. Here the
//! baseline falls at once to any lower window, and rises toward a higher
//! one at two speeds: quickly ([`GradientConfig::rise`]) while the runtime
//! had CPU to spare, so a latency the limit did not cause (a slower
//! upstream) is adopted within a second or two and starves nobody; slowly
//! ([`GradientConfig::overload_rise`]) while the CPU was saturated, where
//! the extra latency is the queue for the CPU that the limit exists to keep
//! short. A dearer mix of requests that saturates the CPU is adopted too:
//! once the limit has fallen to what the CPU gets through, the CPU has room
//! again and the baseline catches up.

use std::time::Duration;

/// The tuning of a [`Gradient`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientConfig {
    /// The limit at start.
    pub initial: usize,
    /// The least the limit becomes.
    pub min: usize,
    /// The most the limit becomes.
    pub max: usize,
    /// How many times the baseline a window's mean latency may be before
    /// the limit falls: the queue the limit allows. 1.5 keeps a CPU busy
    /// (a request's turn comes within half its own latency) without letting
    /// a queue form.
    pub tolerance: f64,
    /// The share of the gap to a higher window's latency the baseline
    /// closes per window when the latency was not the limit's own doing.
    pub rise: f64,
    /// The same share while the CPU was saturated (the latency is a queue
    /// for it).
    pub overload_rise: f64,
    /// What an unused limit is multiplied by per window, down to twice the
    /// most in flight in the window.
    pub unused_decay: f64,
    /// Whether the work runs on this process's CPU (true: an edge's
    /// requests), so that a latency grown while the CPU was saturated is
    /// the queue for it and lowers the limit; false for calls whose latency
    /// is another service's (a bulkhead): while this process's CPU is
    /// saturated their latency says nothing of that service, and the limit
    /// and baseline are left as they are.
    pub on_this_cpu: bool,
}

impl GradientConfig {
    /// The defaults, from `initial` within `min` and `max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let max = max.max(1);
        let min = min.clamp(1, max);
        GradientConfig {
            initial: initial.clamp(min, max),
            min,
            max,
            tolerance: 1.5,
            rise: 0.1,
            overload_rise: 0.002,
            unused_decay: 0.9,
            on_this_cpu: true,
        }
    }
}

/// What one window of completed work measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Work that completed in the window.
    pub samples: u32,
    /// Their latencies, summed.
    pub latency_sum: Duration,
    /// The most in flight at once during the window.
    pub peak_in_flight: usize,
    /// Work that had to wait, or was refused, in the window.
    pub turned_away: u64,
    /// Whether the runtime's workers were busy nearly all the window.
    pub saturated: bool,
}

impl Window {
    /// The window's mean latency, in seconds (`None` without samples).
    fn mean(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.latency_sum.as_secs_f64() / f64::from(self.samples))
    }
}

/// A concurrency limit that follows the latency it causes.
#[derive(Debug, Clone)]
pub struct Gradient {
    config: GradientConfig,
    limit: f64,
    /// Seconds; `None` until the first window.
    baseline: Option<f64>,
}

impl Gradient {
    /// A limit at `config.initial`.
    pub fn new(config: GradientConfig) -> Self {
        Gradient {
            config,
            limit: config.initial as f64,
            baseline: None,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        // `as` saturates; the limit is kept within min and max.
        (self.limit.round() as usize).clamp(self.config.min, self.config.max)
    }

    /// The latency taken as the one without queueing.
    pub fn baseline(&self) -> Option<Duration> {
        self.baseline.map(Duration::from_secs_f64)
    }

    /// Takes `window` into account and returns the limit. A window without
    /// samples changes nothing. The limit falls whenever the latency is
    /// over the tolerance (what is in flight then is too much for what
    /// serves it, whether the limit was reached or not), and grows only
    /// when it was used (half of it in use at some moment, or work turned
    /// away) and the CPU had room. Unused, it drifts down toward twice the
    /// most that was in flight ([`GradientConfig::unused_decay`]).
    pub fn update(&mut self, window: &Window) -> usize {
        let Some(latency) = window.mean() else {
            return self.limit();
        };
        if window.saturated && !self.config.on_this_cpu {
            return self.limit();
        }
        let baseline = match self.baseline {
            Some(b) if latency > b => {
                let rise = if window.saturated {
                    self.config.overload_rise
                } else {
                    self.config.rise
                };
                b + (latency - b) * rise
            }
            _ => latency,
        };
        self.baseline = Some(baseline);
        let used = window.peak_in_flight as f64 >= self.limit / 2.0 || window.turned_away > 0;
        let gradient = (self.config.tolerance * baseline / latency).clamp(0.5, 1.0);
        let mut next = self.limit * gradient + self.limit.sqrt();
        if next > self.limit && window.saturated {
            // The CPU is full: more work at once would only queue for it.
            next = self.limit;
        }
        if next >= self.limit && !used {
            // Not what holds the work back: toward twice what was used, so
            // the limit stays near the work it has, and a sudden slowness
            // meets a limit near what was in flight rather than far above.
            next = (self.limit * self.config.unused_decay)
                .max(2.0 * window.peak_in_flight as f64)
                .min(self.limit);
        }
        self.limit = next.clamp(self.config.min as f64, self.config.max as f64);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(latency_ms: f64, peak: usize, turned_away: u64, saturated: bool) -> Window {
        Window {
            samples: 100,
            latency_sum: Duration::from_secs_f64(latency_ms / 1000.0) * 100,
            peak_in_flight: peak,
            turned_away,
            saturated,
        }
    }

    #[test]
    fn grows_by_its_square_root_while_latency_holds_and_the_limit_is_used() {
        let mut g = Gradient::new(GradientConfig::new(16, 4, 1000));
        assert_eq!(g.update(&window(1.0, 16, 3, false)), 20);
        assert_eq!(g.update(&window(1.0, 20, 3, false)), 24);
        for _ in 0..100 {
            g.update(&window(1.0, g.limit(), 1, false));
        }
        assert_eq!(g.limit(), 1000, "up to the maximum");
    }

    #[test]
    fn an_unused_limit_does_not_grow_but_falls_with_the_latency() {
        let mut g = Gradient::new(GradientConfig::new(64, 4, 1000));
        assert_eq!(
            g.update(&window(1.0, 10, 0, false)),
            58,
            "not up: drifts down"
        );
        for _ in 0..30 {
            g.update(&window(1.0, 10, 0, false));
        }
        let near = g.limit();
        assert!(
            (20..=25).contains(&near),
            "near twice the most in flight: {near}"
        );
        let falls = g.update(&window(5.0, 10, 0, false));
        assert!(falls < 64, "but down with the latency: {falls}");
    }

    #[test]
    fn falls_with_the_latency_at_most_by_half_per_window() {
        let mut g = Gradient::new(GradientConfig::new(100, 4, 1000));
        g.update(&window(1.0, 100, 1, true)); // baseline 1 ms
        let at = g.limit();
        // Twice the baseline: 0.75 of the limit, plus its square root.
        let next = g.update(&window(2.0, at, 1, true));
        assert!(next < at, "{next} < {at}");
        let ten_times = g.update(&window(10.0, next, 1, true));
        assert!(
            ten_times as f64 >= next as f64 * 0.5,
            "{ten_times} is at least half of {next}"
        );
    }

    #[test]
    fn a_saturated_cpu_holds_the_limit_where_latency_would_let_it_grow() {
        let mut g = Gradient::new(GradientConfig::new(32, 4, 1000));
        assert_eq!(g.update(&window(1.0, 32, 5, true)), 32);
        assert_eq!(g.update(&window(1.0, 32, 5, false)), 38);
    }

    #[test]
    fn the_baseline_falls_at_once_and_rises_slowly_only_under_overload() {
        let mut g = Gradient::new(GradientConfig::new(32, 4, 1000));
        g.update(&window(2.0, 1, 0, false));
        g.update(&window(1.0, 1, 0, false));
        assert_eq!(
            g.baseline(),
            Some(Duration::from_millis(1)),
            "falls at once"
        );
        g.update(&window(2.0, 32, 5, true));
        let overloaded = g.baseline().map(|b| b.as_secs_f64() * 1000.0);
        assert!(
            overloaded.is_some_and(|b| b < 1.01),
            "overload: {overloaded:?}"
        );
        g.update(&window(2.0, 1, 0, false));
        let adopted = g.baseline().map(|b| b.as_secs_f64() * 1000.0);
        assert!(
            adopted.is_some_and(|b| b > 1.09),
            "a slower upstream, nobody turned away: {adopted:?}"
        );
    }

    #[test]
    fn work_off_this_cpu_ignores_windows_where_the_cpu_was_saturated() {
        let mut g = Gradient::new(GradientConfig {
            on_this_cpu: false,
            ..GradientConfig::new(64, 4, 1000)
        });
        g.update(&window(1.0, 64, 1, false));
        let at = g.limit();
        assert_eq!(g.update(&window(10.0, 64, 1, true)), at, "held");
        assert_eq!(g.baseline(), Some(Duration::from_millis(1)));
        assert!(
            g.update(&window(10.0, 64, 1, false)) < at,
            "but not otherwise"
        );
    }

    #[test]
    fn a_window_without_samples_changes_nothing() {
        let mut g = Gradient::new(GradientConfig::new(32, 4, 1000));
        assert_eq!(g.update(&Window::default()), 32);
        assert_eq!(g.baseline(), None);
    }
}
