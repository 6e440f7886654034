//! The time a call may still take, carried from the section that needs it.
//!
//! Why a task-local: a section wraps an arbitrary future (a typed client
//! call, a batch load, several calls in a row), and the section's deadline
//! must reach every upstream call inside it without each handler threading
//! it through every client method. [`scope`] sets the budget for everything
//! polled inside a future; the upstream stack reads it with [`current`]
//! when a call starts, so each call's timeout is `min(policy timeout,
//! what is left of the section)` and the upstream is told the same figure
//! (`grpc-timeout`, `x-request-deadline-ms`).
//!
//! ```
//! # use std::time::Duration;
//! use bff_upstream::budget::{self, Budget, Criticality};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
//! let seen = budget::scope(Budget::new(deadline, Criticality::Optional), async {
//!     budget::current()
//! })
//! .await;
//! assert_eq!(seen.map(|b| b.deadline), Some(deadline));
//! assert!(budget::current().is_none(), "only inside the scope");
//! # });
//! ```

use std::future::Future;

use tokio::time::Instant;

/// Whether a response is worth anything without the data a call fetches.
/// Optional calls are shed first when an upstream is saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    /// The response can do without it.
    Optional,
    /// Without it the response fails.
    Critical,
}

/// The deadline and criticality of the section a call is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// When the section gives up.
    pub deadline: Instant,
    /// How much the response needs the section.
    pub criticality: Criticality,
}

impl Budget {
    /// A budget ending at `deadline`.
    pub fn new(deadline: Instant, criticality: Criticality) -> Self {
        Budget {
            deadline,
            criticality,
        }
    }
}

tokio::task_local! {
    static BUDGET: Budget;
}

/// Runs `future` with `budget` visible to every upstream call inside it.
pub fn scope<F: Future>(budget: Budget, future: F) -> impl Future<Output = F::Output> {
    BUDGET.scope(budget, future)
}

/// The budget of the section being polled, if any.
pub fn current() -> Option<Budget> {
    BUDGET.try_with(|b| *b).ok()
}
