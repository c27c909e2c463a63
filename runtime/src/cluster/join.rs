//! Joining the cluster at start-up: this node's registry entry, its
//! heartbeat and load probe, and the limiters it shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::policies::Policies;

pub type Limiters = (
    Arc<dyn crate::cluster::CallerLimiter>,
    Arc<dyn crate::cluster::RateLimiter>,
);

/// The caller limit and API rate limit: cluster-wide with a cluster, else this node's.
pub fn limiters(
    config: &Config,
    cluster: Option<&Arc<crate::cluster::redis::Cluster>>,
) -> Limiters {
    use crate::cluster::redis::limits::{SharedCallerLimit, SharedRateLimit};
    match cluster {
        Some(c) => (
            Arc::new(SharedCallerLimit::new(
                Arc::clone(c),
                config.caller_calls_per_hour,
            )),
            Arc::new(SharedRateLimit::new(
                Arc::clone(c),
                config.api_requests_per_second,
            )),
        ),
        None => (
            Arc::new(crate::cluster::caller_limit::CallerLimit::new(
                config.caller_calls_per_hour,
            )),
            Arc::new(crate::cluster::rate_limit::RateLimit::new(
                config.api_requests_per_second,
            )),
        ),
    }
}

/// Joins the cluster when `redis_url` is set: this node's entry, the
/// heartbeat, the load probe on every worker.
pub fn start(
    config: &Config,
    addr: SocketAddr,
    lifecycle: &Arc<Lifecycle>,
    policies: &Arc<Policies>,
    runtimes: &[tokio::runtime::Handle],
    writer: &crate::store::writer::Writer,
) -> Result<Option<Arc<crate::cluster::redis::Cluster>>, String> {
    if config.redis_url.is_empty() {
        return Ok(None);
    }
    let url = if !config.cluster.advertise_url.is_empty() {
        config.cluster.advertise_url.clone()
    } else if addr.ip().is_unspecified() {
        return Err(format!(
            "cluster.advertise_url: listening on {addr}, the other nodes and Twilio cannot be told where this node is; set HARK_CLUSTER__ADVERTISE_URL (e.g. https://hark.example.com/n/{})",
            config.node_name()
        ));
    } else {
        format!("http://{addr}")
    };
    let capacity = match config.cluster.capacity {
        0 => config.max_calls,
        n => n,
    };
    let cluster = crate::cluster::redis::Cluster::new(
        &config.redis_url,
        &config.cluster,
        crate::cluster::redis::NodeParts {
            node: config.node_name(),
            url,
            capacity,
            start_timeout: Duration::from_secs(config.start_timeout_secs),
            lifecycle: Arc::clone(lifecycle),
            policies: Arc::clone(policies),
            lag: crate::cluster::load::Lag::start(runtimes),
            records: writer.queue.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    cluster.spawn_heartbeat();
    tracing::info!(node = %cluster.node, url = %cluster.url, capacity, "cluster: registering in Redis");
    Ok(Some(cluster))
}
