//! The in-process API rate limiter: a token bucket per token name.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// A token bucket per token name.
pub struct RateLimit {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl super::RateLimiter for RateLimit {
    async fn admit(&self, who: &str) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let burst = self.per_second * 2.0;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = b.entry(who.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::RateLimiter;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_allows_bursts_then_refills() {
        let l = RateLimit::new(2);
        for _ in 0..4 {
            assert!(l.admit("t").await);
        }
        assert!(!l.admit("t").await);
        assert!(l.admit("other").await);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.admit("t").await);
    }
}
