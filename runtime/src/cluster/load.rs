//! A node's queue depth: how much work is waiting on it, 1.0 = full.
//!
//! `depth = (calls active + calls starting) / capacity + lag / 20 ms`
//!
//! A call count alone says nothing of what the calls cost: ten calls in a
//! long bot turn with tool rounds and TTS backlog load a node more than
//! fifty quiet listeners, and a node sharing its cores with something else
//! (a noisy neighbour, a GC'd sidecar, an encoder burst) is slower at the
//! same count. Work that waits shows up as delay: a probe on each worker
//! thread asks to wake every 100 ms and measures how late it runs — every
//! actor message, frame and synthesized chunk queued ahead of it on that
//! thread (Little's law: waiting work = rate × delay). A worker running a
//! whole 20 ms frame period late is saturated: its calls' audio is late, so
//! the lag term reaches 1.0 there, as the call term does at capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

/// `hark_node_queue_depth`: this node's queue depth (1.0 = full).
pub const QUEUE_DEPTH: &str = "hark_node_queue_depth";
/// `hark_node_scheduling_lag_seconds`: how late the worker threads run (mean).
pub const SCHEDULING_LAG: &str = "hark_node_scheduling_lag_seconds";

/// One frame period: the lag at which a worker counts as full.
pub const FRAME: Duration = Duration::from_millis(20);
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// The timer's own granularity: lateness under it is not load.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// The scheduling lag of each worker, smoothed (µs).
pub struct Lag {
    workers: Vec<AtomicU64>,
}

impl Lag {
    /// Starts a probe on each runtime. The tasks end with their runtimes.
    pub fn start(runtimes: &[Handle]) -> Arc<Self> {
        let lag = Arc::new(Self {
            workers: runtimes.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        for (i, rt) in runtimes.iter().enumerate() {
            let lag = Arc::clone(&lag);
            rt.spawn(async move {
                loop {
                    let asked = Instant::now() + PROBE_EVERY;
                    tokio::time::sleep_until(asked).await;
                    let late = Instant::now()
                        .saturating_duration_since(asked)
                        .saturating_sub(TIMER_GRAIN);
                    lag.observe(i, late);
                }
            });
        }
        lag
    }

    /// A lag that stays what it is told (tests of placement).
    #[cfg(test)]
    pub fn fixed(lag: Duration) -> Arc<Self> {
        Arc::new(Self {
            workers: vec![AtomicU64::new(lag.as_micros() as u64)],
        })
    }

    /// Exponentially weighted (α = 1/4): a second of samples dominates.
    fn observe(&self, worker: usize, late: Duration) {
        let Some(slot) = self.workers.get(worker) else {
            return;
        };
        let sample = late.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = slot.load(Ordering::Relaxed);
        slot.store(old - old / 4 + sample / 4, Ordering::Relaxed);
    }

    /// The mean over the workers (calls go to the least loaded one).
    pub fn mean(&self) -> Duration {
        if self.workers.is_empty() {
            return Duration::ZERO;
        }
        let sum: u64 = self.workers.iter().map(|w| w.load(Ordering::Relaxed)).sum();
        Duration::from_micros(sum / self.workers.len() as u64)
    }
}

/// The queue depth of a node with these figures.
pub fn queue_depth(active: usize, starting: usize, capacity: usize, lag: Duration) -> f64 {
    let calls = (active + starting) as f64 / capacity.max(1) as f64;
    calls + lag.as_secs_f64() / FRAME.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_lag_each_reach_one_at_full() {
        assert_eq!(queue_depth(0, 0, 100, Duration::ZERO), 0.0);
        assert_eq!(queue_depth(60, 40, 100, Duration::ZERO), 1.0);
        assert_eq!(queue_depth(0, 0, 100, FRAME), 1.0);
        let half = queue_depth(25, 0, 100, FRAME / 4);
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        assert!(queue_depth(1, 0, 0, Duration::ZERO).is_finite());
    }

    #[test]
    fn lag_is_smoothed_per_worker_and_averaged() {
        let lag = Lag {
            workers: vec![AtomicU64::new(0), AtomicU64::new(0)],
        };
        for _ in 0..40 {
            lag.observe(0, Duration::from_millis(8));
        }
        // Converges on 8 ms on one worker, 0 on the other: 4 ms mean.
        let mean = lag.mean().as_micros();
        assert!((3_900..=4_000).contains(&mean), "{mean}");
        lag.observe(7, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_blocked_worker_shows_lag() {
        let lag = Lag::start(&[Handle::current()]);
        // Hold the only thread 60 ms at a time: every probe in between runs late.
        for _ in 0..12 {
            std::thread::sleep(Duration::from_millis(60));
            tokio::task::yield_now().await;
        }
        assert!(lag.mean() > Duration::from_millis(3), "{:?}", lag.mean());
    }
}
