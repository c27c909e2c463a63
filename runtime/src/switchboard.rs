//! The calls this node carries, by call SID — for what reaches a call from
//! outside its stream: the API (transfer), the carrier's callbacks (the
//! call completed while on hold, the agent's leg), and a new stream of a
//! call that was away.
//!
//! A call outlives its streams: while the caller is away for a transfer
//! (on hold, or being joined to an agent) the call has no stream, and the
//! task that owns the call (started with it) keeps it until its tree ends.
//! A new stream of that call attaches to the same tree.
//!
//! Agent legs are kept apart: their callbacks arrive after the caller's
//! tree may be gone (the agent is with the caller), and the agent's
//! reservation is released when their leg ends, plus wrap-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hark_actors::transfer::Handoff;
use hark_actors::{CallContext, SupervisorMsg};
use ractor::ActorRef;

use crate::stream_token::StreamClaims;

/// Handoffs kept for the API after their call (by call SID).
const HANDOFFS_KEPT: usize = 10_000;

/// Agent legs tracked at most: far more than a node's agents at once.
const LEGS_KEPT: usize = 10_000;

/// One live call.
pub struct LiveCall {
    pub ctx: Arc<CallContext>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Who the call is (from its first stream's token): a new stream's
    /// token is signed with the same claims.
    pub claims: StreamClaims,
    /// A stream of the call is open now.
    streaming: bool,
    /// True once the call's tree has ended.
    ended: tokio::sync::watch::Receiver<bool>,
}

/// What a new stream of a call gets: its tree.
pub type Attach = (
    Arc<CallContext>,
    ActorRef<SupervisorMsg>,
    tokio::sync::watch::Receiver<bool>,
);

/// An agent's leg of a warm transfer.
#[derive(Debug, Clone)]
pub struct AgentLeg {
    /// The caller's call SID (the reservation's key).
    pub call_sid: String,
    pub accept_key: char,
    pub accept: Duration,
    pub wrap_up: Duration,
    /// The agent pressed the key and joined the caller.
    pub accepted: bool,
}

pub struct Switchboard {
    calls: Mutex<HashMap<String, LiveCall>>,
    legs: Mutex<lru::LruCache<String, AgentLeg>>,
    handoffs: Mutex<lru::LruCache<String, Arc<Handoff>>>,
}

impl Default for Switchboard {
    fn default() -> Self {
        // Unbounded caches bounded by hand: `LruCache::new(cap)` would
        // allocate for every entry up front (~1 MB for these two).
        Self {
            calls: Mutex::new(HashMap::new()),
            legs: Mutex::new(lru::LruCache::unbounded()),
            handoffs: Mutex::new(lru::LruCache::unbounded()),
        }
    }
}

/// Puts `value` in `cache`, dropping the least recently used entry past `cap`.
pub(crate) fn put_bounded<V>(
    cache: &mut lru::LruCache<String, V>,
    cap: usize,
    key: String,
    value: V,
) {
    if cache.len() >= cap && !cache.contains(&key) {
        cache.pop_lru();
    }
    cache.put(key, value);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Switchboard {
    /// A call started on a stream.
    pub fn add(
        &self,
        ctx: Arc<CallContext>,
        supervisor: ActorRef<SupervisorMsg>,
        claims: StreamClaims,
        ended: tokio::sync::watch::Receiver<bool>,
    ) {
        let sid = ctx.ids.call_id.clone();
        lock(&self.calls).insert(
            sid,
            LiveCall {
                ctx,
                supervisor,
                claims,
                streaming: true,
                ended,
            },
        );
    }

    /// The call's tree has ended.
    pub fn remove(&self, call_sid: &str) {
        lock(&self.calls).remove(call_sid);
    }

    /// The call's supervisor, if it is live here.
    pub fn supervisor(&self, call_sid: &str) -> Option<ActorRef<SupervisorMsg>> {
        lock(&self.calls)
            .get(call_sid)
            .map(|c| c.supervisor.clone())
    }

    pub fn context(&self, call_sid: &str) -> Option<Arc<CallContext>> {
        lock(&self.calls).get(call_sid).map(|c| Arc::clone(&c.ctx))
    }

    pub fn claims(&self, call_sid: &str) -> Option<StreamClaims> {
        lock(&self.calls).get(call_sid).map(|c| c.claims.clone())
    }

    /// Whether the call is live here, away from its stream, with none open.
    pub fn is_waiting(&self, call_sid: &str) -> bool {
        lock(&self.calls)
            .get(call_sid)
            .is_some_and(|c| !c.streaming && c.ctx.is_away())
    }

    /// A stream of the call ended while the call goes on.
    pub fn stream_ended(&self, call_sid: &str) {
        if let Some(c) = lock(&self.calls).get_mut(call_sid) {
            c.streaming = false;
        }
    }

    /// A new stream of a call that is waiting for one: its tree, now
    /// streaming again; `None` if the call is not waiting here.
    pub fn attach(&self, call_sid: &str) -> Option<Attach> {
        let mut calls = lock(&self.calls);
        let call = calls.get_mut(call_sid)?;
        if call.streaming || !call.ctx.is_away() {
            return None;
        }
        call.streaming = true;
        Some((
            Arc::clone(&call.ctx),
            call.supervisor.clone(),
            call.ended.clone(),
        ))
    }

    pub fn add_leg(&self, leg_sid: String, leg: AgentLeg) {
        put_bounded(&mut lock(&self.legs), LEGS_KEPT, leg_sid, leg);
    }

    pub fn leg(&self, leg_sid: &str) -> Option<AgentLeg> {
        lock(&self.legs).get(leg_sid).cloned()
    }

    pub fn leg_accepted(&self, leg_sid: &str) {
        if let Some(leg) = lock(&self.legs).get_mut(leg_sid) {
            leg.accepted = true;
        }
    }

    pub fn remove_leg(&self, leg_sid: &str) -> Option<AgentLeg> {
        lock(&self.legs).pop(leg_sid)
    }

    pub fn put_handoff(&self, call_sid: &str, handoff: Handoff) {
        put_bounded(
            &mut lock(&self.handoffs),
            HANDOFFS_KEPT,
            call_sid.to_owned(),
            Arc::new(handoff),
        );
    }

    pub fn handoff(&self, call_sid: &str) -> Option<Arc<Handoff>> {
        lock(&self.handoffs).get(call_sid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_caches_drop_the_least_recently_used() {
        let mut c = lru::LruCache::unbounded();
        for i in 0..5 {
            put_bounded(&mut c, 3, format!("k{i}"), i);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("k1").is_none());
        assert_eq!(c.get("k4"), Some(&4));
        // Replacing a key already there drops nothing.
        put_bounded(&mut c, 3, "k2".into(), 20);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("k3"), Some(&3));
    }
}
