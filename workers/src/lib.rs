//! Thread-per-core: N single-threaded tokio runtimes. Each connection — and
//! with it the whole call: socket, session, every actor of the tree, their
//! timers — lives on one of them.
//!
//! A call is a chain of small hops every 20 ms (socket → MediaIn → Vad, Stt).
//! On a work-stealing runtime each hop can unpark another worker that then
//! finds nothing to do; measured on 500 calls, keeping each call on one
//! thread cut Hark's CPU by 16%. Calls are independent, so spreading them
//! over cores by connection is all the parallelism they need.
//!
//! # Layout
//!
//! One file: [`Workers`] (start, spawn on the least loaded, loads, handles).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Worker {
    handle: Handle,
    /// Connections running on this worker.
    load: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub struct Workers {
    workers: Vec<Worker>,
}

/// Counts a connection on its worker for as long as it runs.
struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Workers {
    /// Starts `n` worker threads (0: one per available core).
    pub fn start(n: usize) -> std::io::Result<Self> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("hark-worker-{i}"))
                .spawn(move || {
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.push(Worker {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self { workers })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `f` on the worker with the fewest connections.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(w) = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Acquire))
        else {
            return;
        };
        w.load.fetch_add(1, Ordering::AcqRel);
        let load = Load(Arc::clone(&w.load));
        w.handle.spawn(async move {
            let _load = load;
            f.await;
        });
    }

    /// Connections per worker, for `/readyz`.
    pub fn loads(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.load.load(Ordering::Acquire))
            .collect()
    }

    /// The workers' runtime handles (for metrics: holding them does not keep
    /// the threads alive).
    pub fn handles(&self) -> Vec<Handle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spreads_work_to_the_least_loaded_worker_and_runs_it_there() {
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (hold, held) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let tx = tx.clone();
            let mut held = held.clone();
            workers.spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
                let _ = held.wait_for(|go| *go).await;
            });
        }
        let names: Vec<_> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(2)).unwrap().unwrap())
            .collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.as_str() == "hark-worker-0")
                .count(),
            2
        );
        assert_eq!(
            names
                .iter()
                .filter(|n| n.as_str() == "hark-worker-1")
                .count(),
            2
        );
        assert_eq!(workers.loads(), vec![2, 2]);
        let _ = hold.send(true);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(workers.loads(), vec![0, 0]);
    }
}
