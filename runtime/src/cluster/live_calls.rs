//! One call, one stream: the call SIDs this node has a live stream for.
//!
//! Twilio occasionally opens a second socket for a call, and a replayed
//! `start` would do the same on purpose; two actor trees for one call would
//! answer twice and collide in its records. A second stream for a call SID
//! while one is live is refused. A call may legitimately come back later on a
//! new stream (after a transfer attempt, say): that one is accepted, and its
//! records are numbered after the earlier streams' so none collide. Ended
//! calls are remembered for [`REMEMBER`] for that.
//!
//! This is the in-process [`CallRegistry`]: it knows this node's streams
//! only; a duplicate stream that reaches another node is for the cluster
//! registry (a later issue) behind the same trait.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{CallRegistry, Refused};

/// How long a call's stream count is kept after its last stream ended.
pub const REMEMBER: Duration = Duration::from_secs(3600);
/// Ended calls remembered at most (about a day of a busy node's calls per hour).
const REMEMBER_MAX: usize = 100_000;
/// Streams one call may have: each numbers its records from
/// `index * RECORDS_PER_STREAM`, which must stay in `u32`.
pub const MAX_STREAMS: u32 = 4000;
pub const RECORDS_PER_STREAM: u32 = 1_000_000;

#[derive(Default)]
struct Inner {
    live: HashSet<String>,
    /// Streams each ended call has had, and when its last one ended.
    ended: HashMap<String, (u32, Instant)>,
}

#[derive(Default)]
pub struct LiveCalls(Mutex<Inner>);

impl LiveCalls {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CallRegistry for LiveCalls {
    fn claim(&self, call_sid: &str) -> Result<u32, Refused> {
        let mut inner = self.lock();
        if inner.live.contains(call_sid) {
            return Err(Refused::Duplicate);
        }
        let stream_index = match inner.ended.get(call_sid) {
            Some((n, at)) if at.elapsed() < REMEMBER => *n,
            _ => 0,
        };
        if stream_index >= MAX_STREAMS {
            return Err(Refused::TooManyStreams);
        }
        inner.live.insert(call_sid.to_owned());
        Ok(stream_index)
    }

    fn release(&self, call_sid: &str, stream_index: u32) {
        let mut inner = self.lock();
        inner.live.remove(call_sid);
        let now = Instant::now();
        if inner.ended.len() >= REMEMBER_MAX {
            inner
                .ended
                .retain(|_, (_, at)| now.duration_since(*at) < REMEMBER);
        }
        if inner.ended.len() < REMEMBER_MAX {
            inner
                .ended
                .insert(call_sid.to_owned(), (stream_index.saturating_add(1), now));
        }
    }

    fn is_live(&self, call_sid: &str) -> bool {
        self.lock().live.contains(call_sid)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::CallClaim;

    #[tokio::test(start_paused = true)]
    async fn one_live_stream_per_call_and_later_streams_numbered_after() {
        let calls: Arc<dyn CallRegistry> = Arc::new(LiveCalls::default());
        let first = CallClaim::new(&calls, "CA1").unwrap();
        assert_eq!(first.record_base(), 0);
        assert_eq!(
            CallClaim::new(&calls, "CA1").err(),
            Some(Refused::Duplicate)
        );
        assert!(
            CallClaim::new(&calls, "CA2").is_ok(),
            "other calls are not affected"
        );
        assert!(calls.is_live("CA1"));
        drop(first);
        assert!(!calls.is_live("CA1"));
        // The call comes back (after a transfer attempt): a new stream.
        let again = CallClaim::new(&calls, "CA1").unwrap();
        assert_eq!(again.stream_index, 1);
        assert_eq!(again.record_base(), RECORDS_PER_STREAM);
        drop(again);
        // Long after, it is a stranger again.
        tokio::time::advance(REMEMBER + Duration::from_secs(1)).await;
        assert_eq!(CallClaim::new(&calls, "CA1").unwrap().stream_index, 0);
    }

    #[test]
    fn record_bases_stay_below_the_status_callback_range() {
        let last = (MAX_STREAMS - 1) * RECORDS_PER_STREAM + (RECORDS_PER_STREAM - 1);
        assert!(last < crate::carriers::twilio::STATUS_EVENT_BASE);
    }
}
