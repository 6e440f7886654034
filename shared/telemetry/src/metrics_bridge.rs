//! The `metrics` facade recorded into OpenTelemetry instruments, beside
//! Prometheus, when metrics are exported over OTLP.
//!
//! The shared crates record through `metrics` (one cheap macro per sample);
//! this recorder gives every key (name and labels) one OpenTelemetry
//! instrument and attribute set, built on first use and kept, so a sample
//! costs a map lookup and the instrument's own update. Names and label keys
//! are already the semantic conventions' dotted ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use parking_lot::RwLock;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct OtelRecorder {
    meter: Meter,
    counters: RwLock<HashMap<Key, Arc<OtelCounter>>>,
    gauges: RwLock<HashMap<Key, Arc<OtelGauge>>>,
    histograms: RwLock<HashMap<Key, Arc<OtelHistogram>>>,
    instruments: RwLock<Instruments>,
}

#[derive(Debug, Default)]
struct Instruments {
    counters: HashMap<String, opentelemetry::metrics::Counter<u64>>,
    gauges: HashMap<String, opentelemetry::metrics::Gauge<f64>>,
    histograms: HashMap<String, opentelemetry::metrics::Histogram<f64>>,
    units: HashMap<String, Unit>,
    descriptions: HashMap<String, SharedString>,
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_owned(), l.value().to_owned()))
        .collect()
}

/// The unit in UCUM, as OpenTelemetry wants it.
fn ucum(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Bytes => "By",
        Unit::Percent => "%",
        _ => "1",
    }
}

impl OtelRecorder {
    pub(crate) fn new(meter: Meter) -> Self {
        OtelRecorder {
            meter,
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
            instruments: RwLock::default(),
        }
    }

    fn handle<T>(
        map: &RwLock<HashMap<Key, Arc<T>>>,
        key: &Key,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        if let Some(h) = map.read().get(key) {
            return h.clone();
        }
        let mut map = map.write();
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let mut i = self.instruments.write();
        if let Some(unit) = unit {
            i.units.insert(key.as_str().to_owned(), unit);
        }
        i.descriptions.insert(key.as_str().to_owned(), description);
    }

    fn instrument<T: Clone>(
        &self,
        name: &str,
        pick: impl Fn(&mut Instruments) -> &mut HashMap<String, T>,
        make: impl FnOnce(&Meter, String, Option<Unit>, Option<SharedString>) -> T,
    ) -> T {
        let mut i = self.instruments.write();
        if let Some(found) = pick(&mut i).get(name) {
            return found.clone();
        }
        let unit = i.units.get(name).copied();
        let description = i.descriptions.get(name).cloned();
        let made = make(&self.meter, name.to_owned(), unit, description);
        pick(&mut i).insert(name.to_owned(), made.clone());
        made
    }
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let handle = Self::handle(&self.counters, key, || {
            let counter = self.instrument(
                key.name(),
                |i| &mut i.counters,
                |meter, name, unit, description| {
                    let mut b = meter.u64_counter(name);
                    if let Some(unit) = unit {
                        b = b.with_unit(ucum(unit));
                    }
                    if let Some(d) = description {
                        b = b.with_description(d.into_owned());
                    }
                    b.build()
                },
            );
            OtelCounter {
                counter,
                attributes: attributes(key),
                last_absolute: AtomicU64::new(0),
            }
        });
        Counter::from_arc(handle)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let handle = Self::handle(&self.gauges, key, || {
            let gauge = self.instrument(
                key.name(),
                |i| &mut i.gauges,
                |meter, name, unit, description| {
                    let mut b = meter.f64_gauge(name);
                    if let Some(unit) = unit {
                        b = b.with_unit(ucum(unit));
                    }
                    if let Some(d) = description {
                        b = b.with_description(d.into_owned());
                    }
                    b.build()
                },
            );
            OtelGauge {
                gauge,
                attributes: attributes(key),
                value: AtomicU64::new(0f64.to_bits()),
            }
        });
        Gauge::from_arc(handle)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let handle = Self::handle(&self.histograms, key, || {
            let histogram = self.instrument(
                key.name(),
                |i| &mut i.histograms,
                |meter, name, unit, description| {
                    let seconds = name.ends_with("duration");
                    let mut b = meter.f64_histogram(name);
                    if seconds {
                        b = b.with_unit("s").with_boundaries(crate::BUCKETS.to_vec());
                    } else if let Some(unit) = unit {
                        b = b.with_unit(ucum(unit));
                    }
                    if let Some(d) = description {
                        b = b.with_description(d.into_owned());
                    }
                    b.build()
                },
            );
            OtelHistogram {
                histogram,
                attributes: attributes(key),
            }
        });
        Histogram::from_arc(handle)
    }
}

#[derive(Debug)]
struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// For `absolute`: OpenTelemetry counters only add.
    last_absolute: AtomicU64,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.last_absolute.fetch_max(value, Ordering::AcqRel);
        if value > before {
            self.counter.add(value - before, &self.attributes);
        }
    }
}

#[derive(Debug)]
struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// The current value (f64 bits), for increments.
    value: AtomicU64,
}

impl OtelGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut now = 0.0;
        let _ = self
            .value
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                now = f(f64::from_bits(bits));
                Some(now.to_bits())
            });
        self.gauge.record(now, &self.attributes);
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

#[derive(Debug)]
struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}
