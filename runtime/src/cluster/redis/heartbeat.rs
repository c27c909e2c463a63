//! The heartbeat: this node's entry renewed every `heartbeat_ms`; after an
//! outage, its live calls put back; lapsed nodes' calls closed.

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use hark_actors::records::{Record, now_ms};
use tokio::time::{Instant, MissedTickBehavior};

use super::{
    Cluster, ClusterError, NODES_LOST, REDIS_UP, key_calls, key_node, key_nodes, key_starting,
};
use crate::cluster::load::{QUEUE_DEPTH, SCHEDULING_LAG};

impl Cluster {
    /// Renews the entry every `heartbeat_ms` until the process ends.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.settings.heartbeat());
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last_ok: Option<Instant> = None;
            let mut registered = false;
            loop {
                tick.tick().await;
                if me.left.load(Ordering::Acquire) {
                    return;
                }
                let was_up = me.is_up();
                // Reap others only while this node's own view is fresh: after
                // an outage every entry looks lapsed, and none of them is lost.
                let fresh = was_up && last_ok.is_some_and(|t| t.elapsed() < me.settings.ttl());
                match me.beat(fresh).await {
                    Ok(lost) => {
                        last_ok = Some(Instant::now());
                        if !was_up {
                            me.back_online(registered).await;
                        }
                        registered = true;
                        for id in lost {
                            me.close_lost(&id).await;
                        }
                    }
                    Err(_) => last_ok = None,
                }
            }
        })
    }

    /// One heartbeat now (draining is written at once).
    pub(super) async fn heartbeat_once(&self) -> Result<(), ClusterError> {
        self.beat(false).await.map(|_| ())
    }

    /// Writes the entry; the lapsed nodes this heartbeat took off (`reap`).
    async fn beat(&self, reap: bool) -> Result<Vec<String>, ClusterError> {
        let _one = self.beat_lock.lock().await;
        if self.left.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let lag = self.lag.mean();
        let active = self.lifecycle.active();
        let policies = self.policies.catalog().versions_tag();
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.key(key_nodes())
            .key(key_node(&self.node))
            .key(key_starting(&self.node))
            .arg(&self.node)
            .arg(self.settings.ttl_ms)
            .arg(&self.url)
            .arg(self.capacity)
            .arg(active)
            .arg(lag.as_micros() as u64)
            .arg(u8::from(self.is_draining()))
            .arg(policies)
            .arg(u8::from(reap));
        let (starting, lost): (usize, Vec<String>) =
            match self.run::<Vec<redis::Value>>("heartbeat", &inv).await {
                Ok(values) => {
                    let mut it = values.into_iter();
                    let starting = it
                        .next()
                        .and_then(|v| redis::from_redis_value::<usize>(v).ok())
                        .unwrap_or(0);
                    let lost = it
                        .filter_map(|v| redis::from_redis_value::<String>(v).ok())
                        .collect();
                    (starting, lost)
                }
                Err(e) => {
                    metrics::gauge!(QUEUE_DEPTH).set(self.queue_depth());
                    return Err(e);
                }
            };
        self.starting.store(starting, Ordering::Relaxed);
        metrics::gauge!(QUEUE_DEPTH).set(self.queue_depth());
        metrics::gauge!(SCHEDULING_LAG).set(lag.as_secs_f64());
        if !self.up.swap(true, Ordering::AcqRel) {
            metrics::gauge!(REDIS_UP).set(1.0);
        }
        Ok(lost)
    }

    /// Redis answers (first, or again after an outage): this node's live
    /// calls go (back) in, and the calls that ended meanwhile are ended there.
    async fn back_online(&self, again: bool) {
        let live: Vec<String> = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let ended: Vec<String> = std::mem::take(
            &mut *self
                .ended_away
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if again {
            tracing::info!(node = %self.node, calls = live.len(), "Redis answers again: registered with this node's calls");
        } else {
            tracing::info!(node = %self.node, url = %self.url, calls = live.len(), "registered in the cluster");
        }
        for (i, sid) in ended.iter().enumerate() {
            if self.end_call(sid).await.is_err() {
                // Away again: the rest waits for the next time.
                self.ended_away
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(ended.into_iter().skip(i));
                return;
            }
        }
        for sid in &live {
            if self.register_call(sid).await.is_err() {
                return;
            }
        }
    }

    /// A lapsed node: its calls that were not taken over are over.
    async fn close_lost(&self, id: &str) {
        let mut inv = self.scripts.take_lost.prepare_invoke();
        inv.key(key_calls(id)).arg(id);
        let Ok(calls) = self.run::<Vec<String>>("take_lost", &inv).await else {
            return;
        };
        metrics::counter!(NODES_LOST).increment(1);
        tracing::warn!(lost = %id, calls = calls.len(), "a node stopped renewing its entry: it gets no more calls, its calls are recorded ended node_lost");
        let at = now_ms();
        for call_sid in calls {
            self.records.send(Record::CallEnded {
                call_sid,
                ended_at_ms: at,
                end_reason: "node_lost".into(),
            });
        }
    }
}
