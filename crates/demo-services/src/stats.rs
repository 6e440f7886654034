//! Request counters per service and operation, read through the control API
//! (`GET /stats`), so tests can assert how many calls a BFF really made (for
//! instance: one batch call per upstream, whatever the number of ids).

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::ServiceName;

/// Counts of requests received, by service and operation.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<ServiceName, BTreeMap<String, u64>>>,
}

impl Stats {
    /// Records one request to `operation` (an HTTP route template such as
    /// `GET /users/{id}`, or a gRPC method path).
    pub fn record(&self, service: ServiceName, operation: &str) {
        let mut counts = self.counts.lock();
        let per = counts.entry(service).or_default();
        match per.get_mut(operation) {
            Some(n) => *n += 1,
            None => {
                per.insert(operation.to_owned(), 1);
            }
        }
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> BTreeMap<ServiceName, BTreeMap<String, u64>> {
        self.counts.lock().clone()
    }

    /// How many requests `service` received for `operation`.
    pub fn count(&self, service: ServiceName, operation: &str) -> u64 {
        let counts = self.counts.lock();
        counts
            .get(&service)
            .and_then(|m| m.get(operation))
            .copied()
            .unwrap_or(0)
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.counts.lock().clear();
    }
}
