//! The per-call DTMF limit: a token bucket.

use tokio::time::Instant;

/// `rate` per second, in bursts of up to `rate`.
pub(super) struct TokenBucket {
    pub(super) rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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

    #[tokio::test(start_paused = true)]
    async fn dtmf_is_limited_to_its_rate_in_bursts_of_as_many() {
        let mut bucket = TokenBucket::new(10);
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| bucket.take(t0)).count(), 10);
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| bucket.take(t1)).count(), 10);
        // Half a second: five.
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| bucket.take(t2)).count(), 5);
    }
}
