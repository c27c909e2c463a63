//! Admission and graceful shutdown.
//!
//! On SIGTERM/SIGINT the node stops taking calls (new streams and webhooks get
//! 503, `/readyz` fails), lets calls in progress go on for the grace period,
//! then asks each remaining call to end with the policy's goodbye.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    active: AtomicUsize,
    max_calls: usize,
    changed: Notify,
    grace_over: watch::Sender<bool>,
    /// `hark drain` (the API) asks for what SIGTERM does.
    drain_asked: Notify,
}

/// One admitted stream (a call from its WebSocket upgrade on); frees its place when dropped.
#[derive(Debug)]
pub struct CallSlot(Arc<Lifecycle>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Lifecycle {
    pub fn new(max_calls: usize) -> Arc<Self> {
        Arc::new(Self {
            draining: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            max_calls,
            changed: Notify::new(),
            grace_over: watch::Sender::new(false),
            drain_asked: Notify::new(),
        })
    }

    /// A place for a new call, unless draining or full.
    pub fn admit(self: &Arc<Self>) -> Result<CallSlot, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_calls {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        Ok(CallSlot(Arc::clone(self)))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Asks for the drain SIGTERM starts (no new calls, calls finish, exit).
    pub fn ask_drain(&self) {
        self.drain_asked.notify_one();
    }

    /// Completes once a drain has been asked for through [`Self::ask_drain`].
    pub async fn drain_asked(&self) {
        self.drain_asked.notified().await;
    }

    /// Tells every call in progress to say goodbye and end.
    pub fn end_grace(&self) {
        self.grace_over.send_replace(true);
    }

    pub fn grace_over(&self) -> watch::Receiver<bool> {
        self.grace_over.subscribe()
    }

    /// Waits until no call is active; false on timeout.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.changed.notified();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Draining,
    Full,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Draining => "this node is shutting down and takes no new calls",
            Refusal::Full => "this node is at its max_calls limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_limit_and_refuses_while_draining() {
        let l = Lifecycle::new(2);
        let a = l.admit().unwrap();
        let _b = l.admit().unwrap();
        assert_eq!(l.admit().unwrap_err(), Refusal::Full);
        drop(a);
        let c = l.admit().unwrap();
        l.begin_drain();
        assert_eq!(l.admit().unwrap_err(), Refusal::Draining);
        assert!(!l.wait_idle(Duration::from_millis(20)).await);
        drop(c);
        drop(_b);
        assert!(l.wait_idle(Duration::from_millis(20)).await);
    }
}
