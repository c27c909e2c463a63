//! The runtime config's `[cluster]` section (the Redis URL itself is the
//! top-level `redis_url`, `HARK_REDIS_URL`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// How often the node writes its entry (load, calls, policies) to Redis.
    pub heartbeat_ms: u64,
    /// An entry not renewed for this long is a lost node: no call is placed
    /// on it, and a surviving node closes its calls (`node_lost`).
    pub ttl_ms: u64,
    /// Calls this node is sized for; queue depth is normalised by it.
    /// 0: `max_calls`.
    pub capacity: usize,
    /// A node whose queue depth (1.0 = full) would pass this with one more
    /// call takes no new placement.
    pub max_queue_depth: f64,
    /// Where Twilio and the other nodes reach this node: `http(s)://host[:port][/path]`.
    /// Behind one public host name give each node its own path
    /// (`https://hark.example.com/n/node-a`): the node also serves its
    /// stream at `/n/{node}/twilio/media`. Empty: `http://{listen}`.
    pub advertise_url: String,
    /// Longest a webhook waits for Redis before it places the call on this
    /// node (the cluster counts as degraded meanwhile).
    pub redis_timeout_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 2_000,
            ttl_ms: 6_000,
            capacity: 0,
            max_queue_depth: 0.9,
            advertise_url: String::new(),
            redis_timeout_ms: 250,
        }
    }
}

impl ClusterSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            errors.push(format!(
                "cluster.heartbeat_ms: {} is outside 100..=60000",
                self.heartbeat_ms
            ));
        }
        if self.ttl_ms < self.heartbeat_ms.saturating_mul(2) || self.ttl_ms > 600_000 {
            errors.push(format!(
                "cluster.ttl_ms: {} must be at least twice heartbeat_ms ({}) and at most 600000",
                self.ttl_ms, self.heartbeat_ms
            ));
        }
        if !(self.max_queue_depth > 0.0 && self.max_queue_depth <= 10.0) {
            errors.push(format!(
                "cluster.max_queue_depth: {} is outside (0, 10]",
                self.max_queue_depth
            ));
        }
        if !(10..=10_000).contains(&self.redis_timeout_ms) {
            errors.push(format!(
                "cluster.redis_timeout_ms: {} is outside 10..=10000",
                self.redis_timeout_ms
            ));
        }
        let url = self.advertise_url.as_str();
        if !url.is_empty()
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.ends_with('/')
                || url.contains(['?', '#', '"', '<', ' ']))
        {
            errors.push(format!(
                "cluster.advertise_url: {url:?} must be http(s)://host[:port][/path], without a trailing slash or query"
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert!(ClusterSettings::default().validate().is_empty());
        let bad = ClusterSettings {
            heartbeat_ms: 2_000,
            ttl_ms: 3_000,
            max_queue_depth: 0.0,
            advertise_url: "hark.example.com/".into(),
            ..ClusterSettings::default()
        };
        let errors = bad.validate().join("; ");
        assert!(errors.contains("cluster.ttl_ms"), "{errors}");
        assert!(errors.contains("cluster.max_queue_depth"), "{errors}");
        assert!(errors.contains("cluster.advertise_url"), "{errors}");
    }
}
