//! What a load run measures: HDR histograms (microseconds) and counters,
//! for the whole run and per one-second interval (the timeline and the plot).
//!
//! Send lateness is recorded for every frame by every caller, so it goes
//! into per-thread shards; everything else is per turn and rare.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

const SHARDS: usize = 8;
/// Largest value a histogram holds: one minute, in microseconds.
const MAX_US: u64 = 60_000_000;

#[allow(clippy::expect_used)] // constant, valid bounds: this cannot fail
fn histogram() -> Histogram<u64> {
    // 3 significant digits over 1 µs..60 s.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
}

/// A whole-run and a current-interval histogram.
struct Pair {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

impl Pair {
    fn new() -> Self {
        Self {
            total: histogram(),
            interval: histogram(),
        }
    }

    fn record(&mut self, us: u64) {
        let _ = self.total.record(us);
        let _ = self.interval.record(us);
    }
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Event counts of a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls_started: AtomicU64,
    pub calls_completed: AtomicU64,
    pub failed_connects: AtomicU64,
    pub calls_failed: AtomicU64,
    pub turns: AtomicU64,
    pub unanswered_turns: AtomicU64,
    pub barge_ins: AtomicU64,
    pub missed_barge_ins: AtomicU64,
    pub stale_frames: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub active: AtomicU64,
    /// Webhook answers without a stream (every node full or draining).
    pub calls_refused: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Everything callers and scenarios record into during a run.
pub struct Recorder {
    lateness: [Mutex<Pair>; SHARDS],
    response: Mutex<Pair>,
    barge_in: Mutex<Pair>,
    connect: Mutex<Pair>,
    /// Webhook request → TwiML (with `--webhook`).
    placement: Mutex<Pair>,
    /// Calls per node the webhook placed them on.
    spread: Mutex<std::collections::BTreeMap<String, u64>>,
    pub counters: Counters,
    /// A sample of failures, for the report.
    errors: Mutex<Vec<String>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            lateness: std::array::from_fn(|_| Mutex::new(Pair::new())),
            response: Mutex::new(Pair::new()),
            barge_in: Mutex::new(Pair::new()),
            connect: Mutex::new(Pair::new()),
            placement: Mutex::new(Pair::new()),
            spread: Mutex::new(std::collections::BTreeMap::new()),
            counters: Counters::default(),
            errors: Mutex::new(Vec::new()),
        }
    }
}

/// Percentiles for one interval of the timeline.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct IntervalLatency {
    pub response: Percentiles,
    pub barge_in: Percentiles,
    pub lateness: Percentiles,
}

/// Whole-run percentiles.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub response: Percentiles,
    pub barge_in: Percentiles,
    pub send_lateness: Percentiles,
    pub connect: Percentiles,
    pub placement: Percentiles,
}

impl Recorder {
    pub fn send_lateness(&self, late: Duration) {
        let shard = SHARD.with(|s| *s);
        lock(&self.lateness[shard]).record(micros(late));
    }

    pub fn response(&self, d: Duration) {
        lock(&self.response).record(micros(d));
    }

    pub fn barge_in(&self, d: Duration) {
        lock(&self.barge_in).record(micros(d));
    }

    pub fn connect(&self, d: Duration) {
        lock(&self.connect).record(micros(d));
    }

    /// One webhook answer, and the node it placed the call on.
    pub fn placed(&self, d: Duration, node: Option<&str>) {
        lock(&self.placement).record(micros(d));
        if let Some(node) = node {
            *lock(&self.spread).entry(node.to_owned()).or_default() += 1;
        }
    }

    pub fn spread(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.spread).clone()
    }

    /// Keeps the first few failure descriptions.
    pub fn error(&self, e: String) {
        let mut errors = lock(&self.errors);
        if errors.len() < 20 {
            errors.push(e);
        }
    }

    pub fn errors(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }

    /// Percentiles of the interval since the last call, and starts a new one.
    pub fn take_interval(&self) -> IntervalLatency {
        let take = |m: &Mutex<Pair>| {
            let mut p = lock(m);
            let out = Percentiles::of(&p.interval);
            p.interval.reset();
            out
        };
        let mut lateness = histogram();
        for shard in &self.lateness {
            let mut p = lock(shard);
            let _ = lateness.add(&p.interval);
            p.interval.reset();
        }
        IntervalLatency {
            response: take(&self.response),
            barge_in: take(&self.barge_in),
            lateness: Percentiles::of(&lateness),
        }
    }

    pub fn totals(&self) -> Totals {
        let total = |m: &Mutex<Pair>| Percentiles::of(&lock(m).total);
        let mut lateness = histogram();
        for shard in &self.lateness {
            let _ = lateness.add(&lock(shard).total);
        }
        Totals {
            response: total(&self.response),
            barge_in: total(&self.barge_in),
            send_lateness: Percentiles::of(&lateness),
            connect: total(&self.connect),
            placement: total(&self.placement),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let r = Recorder::default();
        for ms in 1..=100 {
            r.response(Duration::from_millis(ms));
        }
        let t = r.totals();
        assert_eq!(t.response.count, 100);
        assert!((t.response.p50 - 50.0).abs() < 0.1, "{:?}", t.response);
        assert!((t.response.p99 - 99.0).abs() < 0.1, "{:?}", t.response);
        assert!((t.response.max - 100.0).abs() < 0.1);
        let i = r.take_interval();
        assert_eq!(i.response.count, 100);
        assert_eq!(r.take_interval().response.count, 0, "interval was reset");
        assert_eq!(r.totals().response.count, 100, "totals were not");
    }

    #[test]
    fn lateness_shards_merge() {
        let r = std::sync::Arc::new(Recorder::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let r = std::sync::Arc::clone(&r);
                std::thread::spawn(move || {
                    for us in 0..1000 {
                        r.send_lateness(Duration::from_micros(us));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(r.totals().send_lateness.count, 4000);
    }
}
