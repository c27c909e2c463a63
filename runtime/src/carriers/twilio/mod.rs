//! Twilio: the voice and status webhooks, the Media Streams upgrade, the
//! REST client (call control), and transfers: the desk ([`desk`]) and the
//! agent-leg and return webhooks ([`agent`]); a placed call's answer and
//! answering-machine verdict ([`outbound`]); in a cluster, where a new
//! call's stream goes and the `<Connect action>` ([`placement`]), and
//! requests for a call on another node (`owner.rs`). [`request`]: what
//! every route shares (host, signature, TwiML). The wire codecs (messages,
//! stream codec, TwiML, signatures, ids) are `hark_carrier::twilio`.

pub mod agent;
pub mod desk;
pub mod outbound;
mod owner;
pub mod placement;
pub mod request;
pub mod rest;
pub mod webhook;

pub use webhook::{STATUS_EVENT_BASE, caller_identity, media, status, voice};

/// Every route Twilio reaches.
pub fn routes() -> axum::Router<std::sync::Arc<crate::state::AppState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/status", post(status))
        .route("/twilio/media", get(media))
        .route("/twilio/return", post(agent::back))
        .route("/twilio/agent/answer", post(agent::answer))
        .route("/twilio/agent/accept", post(agent::accept))
        .route("/twilio/agent/status", post(agent::status))
        .route("/twilio/recording", post(agent::recording))
        .route("/twilio/outbound/answer", post(outbound::answer))
        .route("/twilio/outbound/amd", post(outbound::amd))
        .route("/twilio/stream-ended", post(placement::stream_ended))
}

/// The routes again under `/n/{node}`: nodes behind one public host name
/// each advertise their own path, which the proxy passes on unchanged (so
/// Twilio's signature, over the URL it requested, still holds).
pub fn node_routes() -> axum::Router<std::sync::Arc<crate::state::AppState>> {
    use axum::routing::get;
    routes().route("/healthz", get(|| async { "ok\n" }))
}
