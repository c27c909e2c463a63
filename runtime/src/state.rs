//! What every part of a node shares: its config, the live policies, the
//! store, the cluster seams. A leaf: it names the types it holds and no
//! handler, so handlers import it and it imports none of them back.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cluster::{CallRegistry, CallerLimiter, RateLimiter};
use crate::config::Config;
use crate::health::ProviderHealth;
use crate::lifecycle::Lifecycle;
use crate::policies::Policies;
use crate::stream_token::TokenKey;

pub struct AppState {
    pub config: Config,
    /// The live policies and the routing table.
    pub policies: Arc<Policies>,
    pub health: Arc<ProviderHealth>,
    /// This node's name on records.
    pub node: String,
    /// Where calls' records go (the store's writer queue).
    pub records: Arc<dyn hark_actors::records::RecordSink>,
    /// The record writer's queue: erasure reaches into its spool.
    pub record_queue: Arc<crate::store::writer::RecordQueue>,
    /// Call recordings: the pipeline to storage, and reading them back.
    pub recordings: Arc<crate::recordings::Recordings>,
    pub metrics: PrometheusHandle,
    pub lifecycle: Arc<Lifecycle>,
    /// Runtimes whose tasks `hark_runtime_alive_tasks` counts.
    pub runtimes: Vec<tokio::runtime::Handle>,
    pub store: crate::store::Store,
    /// The webhooks' blocklist lookups, on their own pool.
    pub lookups: crate::store::Store,
    /// Whether records reach the database, and what waits in the spool.
    pub store_health: Arc<crate::store::writer::StoreHealth>,
    pub pii: Arc<crate::pii::Pii>,
    /// Twilio's auth token: when set, every Twilio request must be signed.
    pub twilio_auth_token: Option<hark_actors::providers::Secret>,
    pub caller_limit: Arc<dyn CallerLimiter>,
    pub api_limit: Arc<dyn RateLimiter>,
    /// Token lookups, cached briefly.
    pub tokens: crate::api::limits::TokenCache,
    /// Failed API authentications per client address.
    pub auth_failures: crate::api::limits::AuthFailures,
    /// Signs and verifies the stream tokens the voice webhook hands out.
    pub stream_tokens: TokenKey,
    /// Calls with a live stream on this node: one stream per call.
    pub live_calls: Arc<dyn CallRegistry>,
    /// This node's calls by SID, for what reaches them from outside their stream.
    pub switchboard: Arc<crate::switchboard::Switchboard>,
    /// Call control for transfers (`None`: no Twilio account configured).
    pub desk: Option<Arc<dyn hark_actors::transfer::TransferDesk>>,
    /// Places outbound calls.
    pub dialer: Arc<crate::outbound::Dialer>,
    /// The cluster registry (`None`: one node on its own, no `redis_url`).
    pub cluster: Option<Arc<crate::cluster::redis::Cluster>>,
}
