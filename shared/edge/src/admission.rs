//! Admission: how many API requests a BFF works on at once, and what
//! happens to the others.
//!
//! The limit adapts to the requests' latency ([`bff_limit::Gradient`]):
//! it grows while their mean latency stays near the latency they have
//! when nothing queues, and falls when it grows past that, so a replica
//! offered more than its CPU gets through keeps the requests it admitted
//! fast. A request that finds no place waits at most `BFF_ADMISSION_QUEUE`
//! (2 ms) for one, or none when as many already wait as the limit allows
//! in flight, and is then answered 503 problem+json with `Retry-After: 1`:
//! a client (or a load balancer) told so within milliseconds tries another
//! replica, where one left waiting seconds would give up on an answer that
//! is then computed for nobody. Before, the bound was sized to the mean
//! number in flight and a request waited up to the request deadline for a
//! place: offered 1.5× its capacity, a replica answered everything, after
//! 0.07–1.5 s.
//!
//! The CPU is what the limit protects: it does not grow while the
//! runtime's workers are busy nearly all the time (more requests at once
//! would only queue for the CPU), and a latency that grows while the CPU
//! has room (a slower upstream) becomes the new baseline within a second or
//! two instead of starving the BFF; a slow upstream is the concern of its
//! own adaptive bulkhead (bff-upstream), which sheds that upstream's calls.
//!
//! Classes: a BFF may put groups of routes in classes
//! ([`crate::EdgeBuilder::authenticated_in`]), each with a share of the
//! limit kept for it, so a burst of one (a partner's batch jobs, a storm of
//! live reconnections) cannot take the places of another (the interactive
//! pages). Probes, `/metrics` and the OpenAPI document are outside
//! admission and never refused.

use std::sync::Arc;

use bff_limit::{Gauges, GradientConfig, Limiter, LimiterConfig, Saturation};
use bff_telemetry::names;

use crate::BffConfig;

/// A class of API routes and the share of the limit kept for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionClass {
    /// Its name: the `class` label of the admission metrics.
    pub name: &'static str,
    /// The percentage of the limit kept for it (the shares of a BFF's
    /// classes add up to at most 100).
    pub share: u8,
}

impl AdmissionClass {
    /// The class of routes put in none: no share kept, any place not kept
    /// for another class.
    pub const DEFAULT: AdmissionClass = AdmissionClass {
        name: "default",
        share: 0,
    };
}

/// The limit starts here per CPU, and never falls below it: a page that
/// opens with a dozen calls at once, or a client whose requests bunch up
/// (a phone back in coverage, a load generator that fell behind), is not
/// refused by a replica that keeps up. Measured on one CPU (scenario 11):
/// a floor of 16 refused bursts at 3,000/s, 60% of the capacity, while 32
/// in flight still answer within a few milliseconds under overload (32 ×
/// ~200 µs of CPU each). The limit grows from here, while the latency holds
/// and the CPU has room, for slow upstreams (rate × their latency in flight).
pub const MIN_PER_CPU: usize = 32;

/// The limiter of `config`'s API routes; `None` when `BFF_MAX_IN_FLIGHT`
/// is `off`.
pub(crate) fn limiter(config: &BffConfig) -> Option<Arc<Limiter>> {
    let ceiling = config.max_in_flight?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = if config.adaptive_limit {
        LimiterConfig::adaptive(GradientConfig::new(
            MIN_PER_CPU * cpus,
            MIN_PER_CPU * cpus,
            ceiling,
        ))
    } else {
        LimiterConfig::fixed(ceiling)
    };
    let gauges = Gauges {
        limit: metrics::gauge!(names::SERVER_IN_FLIGHT_LIMIT),
        queued: metrics::gauge!(names::SERVER_QUEUED),
        in_flight: metrics::gauge!(names::SERVER_IN_FLIGHT, "class" => AdmissionClass::DEFAULT.name),
    };
    Some(Limiter::new(limit, Saturation::runtime(), gauges))
}
