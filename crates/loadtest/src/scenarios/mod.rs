//! The scenarios, one file each, and the table that runs them: a new
//! scenario is a file with a `run(&mut Bench)` and a row here.

use futures::future::BoxFuture;

use crate::bench::Bench;

mod cache_hits;
mod dashboard;
mod instructions;
mod live;
mod memory;
mod overload;
mod partner_batch;
mod slow_upstreams;
mod static_upstreams;
mod telemetry;
mod upstream_down;
mod web_page;

/// One scenario of the harness.
pub(crate) struct Scenario {
    /// Its number in `--scenarios` and in the table's rows.
    pub(crate) number: u8,
    /// Whether it measures the shared bff-mobile (started once for all).
    pub(crate) uses_mobile: bool,
    /// Runs it, adding rows and notes to the bench.
    pub(crate) run: for<'a, 'b> fn(&'a mut Bench<'b>) -> BoxFuture<'a, Result<(), String>>,
}

/// Every scenario, in the order they run: the ones that restart upstreams
/// or add load of their own come after those that need a quiet machine.
pub(crate) const SCENARIOS: [Scenario; 12] = [
    Scenario {
        number: 1,
        uses_mobile: true,
        run: |b| Box::pin(dashboard::run(b)),
    },
    Scenario {
        number: 2,
        uses_mobile: true,
        run: |b| Box::pin(slow_upstreams::run(b)),
    },
    Scenario {
        number: 3,
        uses_mobile: false,
        run: |b| Box::pin(web_page::run(b)),
    },
    Scenario {
        number: 4,
        uses_mobile: false,
        run: |b| Box::pin(partner_batch::run(b)),
    },
    Scenario {
        number: 5,
        uses_mobile: true,
        run: |b| Box::pin(cache_hits::run(b)),
    },
    Scenario {
        number: 6,
        uses_mobile: true,
        run: |b| Box::pin(upstream_down::run(b)),
    },
    Scenario {
        number: 7,
        uses_mobile: true,
        run: |b| Box::pin(memory::run(b)),
    },
    Scenario {
        number: 10,
        uses_mobile: false,
        run: |b| Box::pin(static_upstreams::run(b)),
    },
    Scenario {
        number: 11,
        uses_mobile: false,
        run: |b| Box::pin(overload::run(b)),
    },
    Scenario {
        number: 8,
        uses_mobile: true,
        run: |b| Box::pin(telemetry::run(b)),
    },
    Scenario {
        number: 9,
        uses_mobile: false,
        run: |b| Box::pin(live::run(b)),
    },
    Scenario {
        number: 12,
        uses_mobile: false,
        run: |b| Box::pin(instructions::run(b)),
    },
];
