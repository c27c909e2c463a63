//! The in-process caller limiter: call attempts per caller per hour, in a
//! bounded LRU.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Callers whose attempts the limiter remembers: the least recently seen
/// are forgotten past this, so memory stays bounded whatever the flood.
pub const CALLER_LIMIT_MEMORY: usize = 100_000;

/// Call attempts per caller per hour (by the number's keyed hash).
pub struct CallerLimit {
    per_hour: u32,
    /// Most callers this remembers; the map grows to it as callers come
    /// (`LruCache::new` would allocate all of it up front: 2 MB idle).
    memory: usize,
    seen: Mutex<lru::LruCache<String, (Instant, u32)>>,
}

impl CallerLimit {
    pub fn new(per_hour: u32) -> Self {
        Self::with_memory(per_hour, CALLER_LIMIT_MEMORY)
    }

    pub fn with_memory(per_hour: u32, callers: usize) -> Self {
        Self {
            per_hour,
            memory: callers.max(1),
            seen: Mutex::new(lru::LruCache::unbounded()),
        }
    }

    pub fn remembered(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[async_trait::async_trait]
impl super::CallerLimiter for CallerLimit {
    async fn admit(&self, caller: &str) -> bool {
        if self.per_hour == 0 {
            return true;
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if !seen.contains(caller) && seen.len() >= self.memory {
            seen.pop_lru();
        }
        let entry = seen.get_or_insert_mut(caller.to_owned(), || (now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(3600) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::CallerLimiter;

    #[tokio::test]
    async fn the_caller_limiter_forgets_the_least_recent_past_its_memory() {
        let l = CallerLimit::with_memory(1, 3);
        for c in ["a", "b", "c", "d", "e"] {
            assert!(l.admit(c).await);
        }
        assert_eq!(l.remembered(), 3);
        assert!(!l.admit("e").await, "the recent ones are still counted");
    }

    #[tokio::test(start_paused = true)]
    async fn caller_limit_resets_after_an_hour() {
        let l = CallerLimit::new(2);
        assert!(l.admit("a").await && l.admit("a").await);
        assert!(!l.admit("a").await);
        assert!(l.admit("b").await);
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert!(l.admit("a").await);
    }
}
