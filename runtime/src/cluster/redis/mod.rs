//! The cluster registry in Redis: this node's entry (heartbeat with a TTL),
//! placement by queue depth with an atomic reservation, call → node
//! entries, lost nodes' calls closed by a survivor.
//!
//! Every operation is one script (one round trip) under
//! `cluster.redis_timeout_ms`; a Redis that is down or slow makes the node
//! serve on its own (placements here, limits in-process, `/readyz`
//! `degraded`), and the heartbeat puts it back — entry and live calls —
//! when Redis answers again. The connection manager reconnects by itself.
//!
//! # Layout
//! - [`scripts`] — the Lua scripts and the key layout.
//! - `heartbeat.rs` — the heartbeat loop, re-registration, lost nodes.
//! - [`limits`] — the caller limit and the API rate limit, cluster-wide.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

use super::load::Lag;
use super::settings::ClusterSettings;
use crate::lifecycle::Lifecycle;
use crate::policies::Policies;

mod heartbeat;
pub mod limits;
pub mod scripts;
#[cfg(test)]
mod tests;

/// `hark_cluster_placements_total{result}`: `here`, `other` (another
/// node), `local_fallback` (Redis unreachable: this node), `none` (every
/// node full or draining).
pub const PLACEMENTS: &str = "hark_cluster_placements_total";
/// `hark_cluster_redis_errors_total{op}`: Redis operations that failed or timed out.
pub const REDIS_ERRORS: &str = "hark_cluster_redis_errors_total";
/// `hark_cluster_redis_ops_total{op}`: exchanges with Redis (scripts, lookups).
pub const REDIS_OPS: &str = "hark_cluster_redis_ops_total";
/// `hark_cluster_redis_up`: 1 while the last heartbeat reached Redis.
pub const REDIS_UP: &str = "hark_cluster_redis_up";
/// `hark_cluster_nodes_lost_total`: lost nodes this node closed the calls of.
pub const NODES_LOST: &str = "hark_cluster_nodes_lost_total";
/// `hark_cluster_placement_seconds`: one placement's Redis round trip.
pub const PLACEMENT_SECONDS: &str = "hark_cluster_placement_seconds";
/// Its buckets: 0.25 ms to the 250 ms default timeout.
pub const PLACEMENT_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// Stream indexes of takeovers start past the ones a node numbers itself.
const TAKEOVER_STREAMS: u32 = super::live_calls::MAX_STREAMS;
/// The last index whose records stay below the status callbacks' numbers.
const LAST_STREAM: u32 = 4_289;
/// A live call's entry without news (see `call_keep_ms`).
const LIVE_KEEP: Duration = Duration::from_secs(86_400);
/// How long a call's entry outlives its end (for a late `<Connect action>`).
const ENDED_KEEP: Duration = Duration::from_secs(600);

/// Where a new call goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// A node of the cluster (maybe this one) reserved a slot.
    Node { id: String, url: String },
    /// Redis could not be asked: this node takes it.
    Fallback,
    /// Every live node is over its limit, draining, or lacks the policy.
    Full,
}

/// A call's entry: its node and whether Hark ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEntry {
    pub node: String,
    pub ended: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis_url: {0}")]
    Url(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

struct Scripts {
    heartbeat: Script,
    place: Script,
    started: Script,
    ended: Script,
    take_lost: Script,
    next_stream: Script,
    caller_attempt: Script,
    take_token: Script,
}

/// What a node's registry entry is made of.
pub struct NodeParts {
    /// This node's id (its record name).
    pub node: String,
    /// Where Twilio and the other nodes reach it.
    pub url: String,
    /// Calls it is sized for.
    pub capacity: usize,
    /// How long a reservation waits for its stream (`start_timeout_secs`).
    pub start_timeout: Duration,
    pub lifecycle: Arc<Lifecycle>,
    pub policies: Arc<Policies>,
    pub lag: Arc<Lag>,
    pub records: Arc<dyn hark_actors::records::RecordSink>,
}

pub struct Cluster {
    /// This node's id in the registry (its record name).
    pub node: String,
    /// Where Twilio and the other nodes reach this node.
    pub url: String,
    settings: ClusterSettings,
    capacity: usize,
    start_timeout: Duration,
    conn: ConnectionManager,
    scripts: Scripts,
    /// For forwarded requests and liveness checks between nodes.
    http: reqwest::Client,
    up: AtomicBool,
    draining: AtomicBool,
    /// Out of the registry for good (shutting down): no more heartbeats.
    left: AtomicBool,
    /// A heartbeat and leaving never overlap (a late beat would re-register).
    beat_lock: tokio::sync::Mutex<()>,
    /// Reservations on this node, as of the last heartbeat.
    starting: AtomicUsize,
    lag: Arc<Lag>,
    /// This node's live calls: put back into Redis after an outage.
    calls: Mutex<HashSet<String>>,
    /// Calls that ended while Redis was away: their entries end when it is back.
    ended_away: Mutex<Vec<String>>,
    lifecycle: Arc<Lifecycle>,
    policies: Arc<Policies>,
    records: Arc<dyn hark_actors::records::RecordSink>,
}

impl Cluster {
    pub fn new(
        redis_url: &str,
        settings: &ClusterSettings,
        parts: NodeParts,
    ) -> Result<Arc<Self>, ClusterError> {
        let NodeParts {
            node,
            url,
            capacity,
            start_timeout,
            lifecycle,
            policies,
            lag,
            records,
        } = parts;
        let client =
            redis::Client::open(redis_url).map_err(|e| ClusterError::Url(e.to_string()))?;
        let timeout = settings.redis_timeout();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        // Lazy: a Redis that is down at start-up does not stop the node.
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let script = |body: &str| Script::new(&scripts::with_clock(body));
        Ok(Arc::new(Self {
            node,
            url,
            settings: settings.clone(),
            capacity,
            start_timeout,
            conn,
            http: reqwest::Client::new(),
            scripts: Scripts {
                heartbeat: script(scripts::HEARTBEAT),
                place: script(scripts::PLACE),
                started: Script::new(scripts::STARTED),
                ended: Script::new(scripts::ENDED),
                take_lost: Script::new(scripts::TAKE_LOST_CALLS),
                next_stream: Script::new(scripts::NEXT_STREAM),
                caller_attempt: Script::new(scripts::CALLER_ATTEMPT),
                take_token: script(scripts::TAKE_TOKEN),
            },
            up: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            left: AtomicBool::new(false),
            beat_lock: tokio::sync::Mutex::new(()),
            starting: AtomicUsize::new(0),
            lag,
            calls: Mutex::new(HashSet::new()),
            ended_away: Mutex::new(Vec::new()),
            lifecycle,
            policies,
            records,
        }))
    }

    /// Whether the last exchange with Redis worked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// This node's queue depth now (1.0 = full).
    pub fn queue_depth(&self) -> f64 {
        super::load::queue_depth(
            self.lifecycle.active(),
            self.starting.load(Ordering::Relaxed),
            self.capacity,
            self.lag.mean(),
        )
    }

    /// Runs `script` under the Redis timeout, counted by `op`.
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        self.timed(op, invocation.invoke_async(&mut conn)).await
    }

    /// One Redis exchange under the Redis timeout: counted by `op`, its
    /// failure counted and, the first time, logged as Redis being away.
    async fn timed<T>(
        &self,
        op: &'static str,
        exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        metrics::counter!(REDIS_OPS, "op" => op).increment(1);
        let timeout = self.settings.redis_timeout();
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::Redis(e)),
            Err(_) => Err(ClusterError::Timeout(timeout)),
        };
        if let Err(e) = &result {
            metrics::counter!(REDIS_ERRORS, "op" => op).increment(1);
            if self.up.swap(false, Ordering::AcqRel) {
                metrics::gauge!(REDIS_UP).set(0.0);
                tracing::warn!(op, error = %e, "Redis unreachable: this node serves on its own (placements here, limits in-process) until it answers");
            }
        }
        result
    }

    /// Picks the node for a new call and reserves a slot there for
    /// `start_timeout_secs`. `policy_tag`: only nodes holding this policy
    /// version; `exclude`: a node that must not get it (a lost one).
    pub async fn place(&self, call_sid: &str, policy_tag: &str, exclude: &str) -> Placement {
        // While Redis is away calls do not wait for it: the heartbeat finds
        // out when it is back.
        if !self.is_up() {
            metrics::counter!(PLACEMENTS, "result" => "local_fallback").increment(1);
            return Placement::Fallback;
        }
        let started = std::time::Instant::now();
        let reserve_ms = self.start_timeout.as_millis() as u64;
        let mut inv = self.scripts.place.prepare_invoke();
        inv.key(key_nodes())
            .arg(call_sid)
            .arg(reserve_ms)
            .arg(self.settings.max_queue_depth)
            .arg(super::load::FRAME.as_micros() as u64)
            .arg(policy_tag)
            .arg(exclude);
        let result: Result<Option<(String, String, String)>, _> = self.run("place", &inv).await;
        metrics::histogram!(PLACEMENT_SECONDS).record(started.elapsed().as_secs_f64());
        let placement = match result {
            Ok(Some((id, url, _depth))) => Placement::Node { id, url },
            Ok(None) => Placement::Full,
            Err(_) => Placement::Fallback,
        };
        let label = match &placement {
            Placement::Node { id, .. } if *id == self.node => "here",
            Placement::Node { .. } => "other",
            Placement::Fallback => "local_fallback",
            Placement::Full => "none",
        };
        metrics::counter!(PLACEMENTS, "result" => label).increment(1);
        placement
    }

    /// A stream of `call_sid` started here: its reservation becomes a
    /// live call on this node.
    pub async fn call_started(&self, call_sid: &str) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(call_sid.to_owned());
        // Redis away: registered when it is back (`back_online`).
        if self.is_up() {
            let _ = self.register_call(call_sid).await;
        }
    }

    async fn register_call(&self, call_sid: &str) -> Result<(), ClusterError> {
        let mut inv = self.scripts.started.prepare_invoke();
        inv.key(key_starting(&self.node))
            .key(key_node(&self.node))
            .key(key_calls(&self.node))
            .key(key_call(call_sid))
            .arg(&self.node)
            .arg(call_sid)
            .arg(self.call_keep_ms());
        self.run::<i64>("started", &inv).await.map(|_| ())
    }

    /// Hark ended `call_sid` on this node (before its stream closes, so a
    /// `<Connect action>` request finds it ended).
    pub async fn call_ended(&self, call_sid: &str) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(call_sid);
        if !self.is_up() || self.end_call(call_sid).await.is_err() {
            let mut away = self
                .ended_away
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Bounded: past it, the entries lapse on their own (their TTL).
            if away.len() < 100_000 {
                away.push(call_sid.to_owned());
            }
        }
    }

    async fn end_call(&self, call_sid: &str) -> Result<(), ClusterError> {
        let mut inv = self.scripts.ended.prepare_invoke();
        inv.key(key_node(&self.node))
            .key(key_calls(&self.node))
            .key(key_call(call_sid))
            .arg(&self.node)
            .arg(call_sid)
            .arg(ENDED_KEEP.as_millis() as u64);
        self.run::<i64>("ended", &inv).await.map(|_| ())
    }

    /// The call's entry; `Ok(None)`: the cluster does not know it.
    pub async fn call_entry(&self, call_sid: &str) -> Result<Option<CallEntry>, ClusterError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key_call(call_sid)).arg("node").arg("state");
        let (node, state): (Option<String>, Option<String>) =
            self.timed("lookup", cmd.query_async(&mut conn)).await?;
        Ok(node.map(|node| CallEntry {
            node,
            ended: state.as_deref() == Some("ended"),
        }))
    }

    /// The URL a node advertised, while its entry lives.
    pub async fn node_url(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HGET");
        cmd.arg(key_node(id)).arg("url");
        self.timed("node_url", cmd.query_async(&mut conn)).await
    }

    /// The next stream index of a call taken over from a lost node.
    pub async fn next_stream(&self, call_sid: &str) -> Result<u32, ClusterError> {
        let mut inv = self.scripts.next_stream.prepare_invoke();
        inv.key(key_call(call_sid)).arg(self.call_keep_ms());
        let n: i64 = self.run("next_stream", &inv).await?;
        // Past the indexes a node gives a call's own streams (a transfer's
        // return), so the two never share record numbers.
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Ok(TAKEOVER_STREAMS.saturating_add(n).min(LAST_STREAM))
    }

    /// No new placements here; calls in progress go on. Written at once.
    pub async fn drain(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            tracing::info!(node = %self.node, "draining: no new calls are placed on this node");
        }
        let _ = self.heartbeat_once().await;
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Takes this node's entry out of the registry (its calls are over).
    pub async fn leave(&self) {
        let _no_beat = self.beat_lock.lock().await;
        self.left.store(true, Ordering::Release);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(key_nodes())
            .arg(&self.node)
            .cmd("DEL")
            .arg(key_node(&self.node))
            .arg(key_starting(&self.node))
            .arg(key_calls(&self.node));
        let leave = pipe.query_async::<()>(&mut conn);
        match tokio::time::timeout(self.settings.redis_timeout() * 4, leave).await {
            Ok(Ok(())) => tracing::info!(node = %self.node, "left the cluster registry"),
            _ => {
                tracing::warn!(node = %self.node, "could not leave the registry; the entry lapses with its TTL")
            }
        }
    }

    /// For `/readyz`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.node,
            "redis": if self.is_up() { "up" } else { "down" },
            "draining": self.is_draining(),
            "queue_depth": self.queue_depth(),
        })
    }

    /// How long a live call's entry lasts without news: a day, longer than
    /// any call, so an entry left by a crash goes away on its own.
    fn call_keep_ms(&self) -> u64 {
        LIVE_KEEP.as_millis() as u64
    }
}

impl Cluster {
    /// Counts an attempt of `caller` (a keyed hash); their attempts in the
    /// hour since their first.
    pub async fn caller_attempt(&self, caller: &str) -> Result<u64, ClusterError> {
        let mut inv = self.scripts.caller_attempt.prepare_invoke();
        inv.key(format!("{{hark}}:caller:{caller}"))
            .arg(3_600_000u64);
        self.run("caller_limit", &inv).await
    }

    /// Takes one request's worth from `who`'s bucket (`rate` per second,
    /// bursts of `burst`).
    pub async fn take_token(&self, who: &str, rate: u32, burst: u32) -> Result<bool, ClusterError> {
        let mut inv = self.scripts.take_token.prepare_invoke();
        inv.key(format!("{{hark}}:api:{who}")).arg(rate).arg(burst);
        let ok: i64 = self.run("rate_limit", &inv).await?;
        Ok(ok == 1)
    }
}

/// `,name@version,`: the tag the placement script looks for.
pub fn policy_tag(name: &str, version: &str) -> String {
    format!(",{name}@{version},")
}

fn key_nodes() -> &'static str {
    "{hark}:nodes"
}

fn key_node(id: &str) -> String {
    format!("{{hark}}:node:{id}")
}

fn key_starting(id: &str) -> String {
    format!("{{hark}}:starting:{id}")
}

fn key_calls(id: &str) -> String {
    format!("{{hark}}:calls:{id}")
}

fn key_call(call_sid: &str) -> String {
    format!("{{hark}}:call:{call_sid}")
}
