//! Bounds for actor mailboxes.
//!
//! ractor mailboxes are unbounded. Audio arrives at a fixed 50 frames/s whatever
//! a stuck actor is doing, so every per-frame hop takes a [`Slot`] first: when an
//! actor has `cap` frames queued, further frames are dropped (and counted) instead
//! of growing memory without limit. The slot travels inside the message and
//! frees itself when the message is dropped — handled, or discarded with a dead
//! mailbox — so a restart can never leak capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Backlog {
    queued: AtomicUsize,
    cap: usize,
}

impl Backlog {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            cap,
        })
    }

    /// A slot for one more queued message, or `None` when the queue is full.
    pub fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let prev = self.queued.fetch_add(1, Ordering::AcqRel);
        if prev >= self.cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            None
        } else {
            Some(Slot(Arc::clone(self)))
        }
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// One unit of a [`Backlog`]'s capacity, released on drop.
#[derive(Debug)]
pub struct Slot(Arc<Backlog>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_backlog_refuses_until_a_slot_drops() {
        let b = Backlog::new(2);
        let s1 = b.try_slot().unwrap();
        let _s2 = b.try_slot().unwrap();
        assert!(b.try_slot().is_none());
        assert_eq!(b.queued(), 2);
        drop(s1);
        assert!(b.try_slot().is_some());
    }
}
