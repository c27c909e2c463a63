//! State the nodes of a cluster share, each piece behind a small trait:
//! which calls have a live stream, how often a caller has called, how fast
//! an API token is being used; and the cluster registry itself (nodes,
//! placement, call → node) in Redis.
//!
//! # Layout
//! - [`CallRegistry`], held through a [`CallClaim`] for as long as a stream
//!   lives; in-process: [`live_calls::LiveCalls`] (one stream per call on
//!   a node; the cluster's call → node entries are in [`redis`]).
//! - [`CallerLimiter`]: call attempts per caller; in-process:
//!   [`caller_limit::CallerLimit`] (bounded LRU); cluster-wide:
//!   [`redis::limits::SharedCallerLimit`], the in-process one its fallback.
//! - [`RateLimiter`]: admin API requests per token; in-process:
//!   [`rate_limit::RateLimit`]; cluster-wide: [`redis::limits::SharedRateLimit`].
//! - [`redis`] — the registry: heartbeat, placement by queue depth, call →
//!   node, lost nodes; [`load`] — queue depth; [`forward`] — signed
//!   requests between nodes; [`settings`] — `[cluster]`; [`join`] — joining
//!   at start-up.

use std::sync::Arc;

pub mod caller_limit;
pub mod forward;
pub mod join;
pub mod live_calls;
pub mod load;
pub mod rate_limit;
pub mod redis;
pub mod settings;

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A stream of this call is live.
    Duplicate,
    /// The call has had [`live_calls::MAX_STREAMS`] streams.
    TooManyStreams,
}

/// The calls with a live stream: one stream per call.
pub trait CallRegistry: Send + Sync {
    /// Claims `call_sid` for a new stream, unless one is live: the new
    /// stream's index (0 for the call's first, then 1, 2…).
    fn claim(&self, call_sid: &str) -> Result<u32, Refused>;
    /// The stream `claim` numbered `stream_index` has ended.
    fn release(&self, call_sid: &str, stream_index: u32);
    fn is_live(&self, call_sid: &str) -> bool;
}

/// Call attempts per caller (keyed by the number's keyed hash).
#[async_trait::async_trait]
pub trait CallerLimiter: Send + Sync {
    /// Counts an attempt; false when the caller is over the limit.
    async fn admit(&self, caller: &str) -> bool;
}

/// Requests per client (an API token's name).
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one request's worth; false when the client is over its rate.
    async fn admit(&self, who: &str) -> bool;
}

/// A live stream's hold on its call SID; released when dropped.
pub struct CallClaim {
    registry: Arc<dyn CallRegistry>,
    call_sid: String,
    /// 0 for the call's first stream, then 1, 2…
    pub stream_index: u32,
}

impl CallClaim {
    pub fn new(registry: &Arc<dyn CallRegistry>, call_sid: &str) -> Result<Self, Refused> {
        let stream_index = registry.claim(call_sid)?;
        Ok(Self {
            registry: Arc::clone(registry),
            call_sid: call_sid.to_owned(),
            stream_index,
        })
    }

    /// Where this stream's turn and event numbers start.
    pub fn record_base(&self) -> u32 {
        self.stream_index
            .saturating_mul(live_calls::RECORDS_PER_STREAM)
    }
}

impl Drop for CallClaim {
    fn drop(&mut self) {
        self.registry.release(&self.call_sid, self.stream_index);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Another registry behind the seam: one that logs what it is asked.
    #[derive(Default)]
    struct Logging(Mutex<Vec<String>>);

    impl CallRegistry for Logging {
        fn claim(&self, call_sid: &str) -> Result<u32, Refused> {
            self.0.lock().unwrap().push(format!("claim {call_sid}"));
            Ok(7)
        }
        fn release(&self, call_sid: &str, stream_index: u32) {
            self.0
                .lock()
                .unwrap()
                .push(format!("release {call_sid} {stream_index}"));
        }
        fn is_live(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn a_claim_is_released_to_its_registry_with_its_stream_index_when_dropped() {
        let log = Arc::new(Logging::default());
        let registry: Arc<dyn CallRegistry> = log.clone();
        let claim = CallClaim::new(&registry, "CA9").unwrap();
        assert_eq!(claim.record_base(), 7 * live_calls::RECORDS_PER_STREAM);
        drop(claim);
        assert_eq!(*log.0.lock().unwrap(), ["claim CA9", "release CA9 7"]);
    }
}
