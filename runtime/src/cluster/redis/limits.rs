//! The caller limit and the API rate limit across the cluster: counters in
//! Redis, so a caller or a token gets the same allowance whichever node
//! they reach. While Redis is away each node counts on its own (the
//! in-process limiter), so limits hold per node rather than not at all.

use std::sync::Arc;

use super::Cluster;
use crate::cluster::caller_limit::CallerLimit;
use crate::cluster::rate_limit::RateLimit;
use crate::cluster::{CallerLimiter, RateLimiter};

/// Call attempts per caller per hour, cluster-wide.
pub struct SharedCallerLimit {
    cluster: Arc<Cluster>,
    per_hour: u32,
    local: CallerLimit,
}

impl SharedCallerLimit {
    pub fn new(cluster: Arc<Cluster>, per_hour: u32) -> Self {
        Self {
            cluster,
            per_hour,
            local: CallerLimit::new(per_hour),
        }
    }
}

#[async_trait::async_trait]
impl CallerLimiter for SharedCallerLimit {
    async fn admit(&self, caller: &str) -> bool {
        if self.per_hour == 0 {
            return true;
        }
        if self.cluster.is_up()
            && let Ok(n) = self.cluster.caller_attempt(caller).await
        {
            return n <= u64::from(self.per_hour);
        }
        self.local.admit(caller).await
    }
}

/// API requests per token, cluster-wide (a token bucket in Redis).
pub struct SharedRateLimit {
    cluster: Arc<Cluster>,
    per_second: u32,
    local: RateLimit,
}

impl SharedRateLimit {
    pub fn new(cluster: Arc<Cluster>, per_second: u32) -> Self {
        Self {
            cluster,
            per_second,
            local: RateLimit::new(per_second),
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for SharedRateLimit {
    async fn admit(&self, who: &str) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if self.cluster.is_up()
            && let Ok(ok) = self
                .cluster
                .take_token(who, self.per_second, self.per_second.saturating_mul(2))
                .await
        {
            return ok;
        }
        self.local.admit(who).await
    }
}
