//! Adaptive concurrency limits: how much work a BFF (or one upstream of
//! it) takes on at once, following the latency that work has, and what
//! happens to the rest: a short wait, then a refusal, so the work that was
//! admitted stays fast instead of everything queueing for seconds.
//!
//! - [`Gradient`]: the limit from each window's mean latency against a
//!   baseline (the choice, and why, in its module).
//! - [`Limiter`]: places under the limit, partitioned by class so a burst
//!   of one class cannot take the places kept for another; a request waits
//!   at most its queue target for a place.
//!
//! The edge's admission (bff-edge) and each upstream's bulkhead
//! (bff-upstream) are limiters; each sets its own metrics from a
//! [`Snapshot`] and the [`Gauges`] it gives the limiter.

pub mod gradient;
mod limiter;

pub use gradient::{Gradient, GradientConfig, Window};
pub use limiter::{
    ClassId, Gauges, Limit, Limiter, LimiterConfig, Permit, Refused, SATURATED, Saturation,
    Snapshot,
};
