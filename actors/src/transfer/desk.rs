//! What `Transfer` needs from outside the call: call control and the agent
//! directory (the runtime's, per carrier), as one small trait.

use std::time::Duration;

use async_trait::async_trait;

use crate::protocol::CallIds;

/// An agent chosen for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLeg {
    pub name: String,
    /// E.164 number or `sip:` URI.
    pub address: String,
}

/// How the agent's leg is to be placed.
#[derive(Debug, Clone)]
pub struct AgentDial {
    pub agent: AgentLeg,
    pub ring: Duration,
    pub accept: Duration,
    pub accept_key: char,
    /// After the agent's leg ends, before they are offered another call.
    pub wrap_up: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeskError(pub String);

/// Call control and the agent directory, as the call needs them.
#[async_trait]
pub trait TransferDesk: Send + Sync {
    /// Redirects the call to `to`; the carrier ends the stream.
    async fn cold(&self, call: &CallIds, to: &str) -> Result<(), DeskError>;
    /// Reserves a free agent, atomically; `None` when nobody is free.
    async fn reserve(
        &self,
        call: &CallIds,
        skill: &str,
        language: &str,
    ) -> Result<Option<AgentLeg>, DeskError>;
    /// Releases the call's reservation (the agent did not take it).
    async fn release(&self, call: &CallIds);
    /// Moves the caller into the call's conference, hearing hold audio;
    /// the carrier ends the stream. `record`: the caller consented to
    /// recording, so the conference is recorded too.
    async fn hold(&self, call: &CallIds, music_url: &str, record: bool) -> Result<(), DeskError>;
    /// Dials the agent, who hears `handoff.summary` and may accept; returns
    /// the agent leg's id. The handoff is kept for the API.
    async fn dial_agent(
        &self,
        call: &CallIds,
        dial: &AgentDial,
        handoff: Handoff,
    ) -> Result<String, DeskError>;
    /// Ends an agent leg that will not be joined.
    async fn hang_up(&self, leg: &str);
    /// Brings the caller back to Hark on a new stream of the same call.
    async fn back_to_bot(&self, call: &CallIds) -> Result<(), DeskError>;
}

/// What the agent gets: heard as a whisper, read from the handoff API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Handoff {
    pub summary: String,
    /// `model` or `template`.
    pub summary_source: &'static str,
    pub target: String,
    pub language: String,
    pub transcript: Vec<HandoffLine>,
    /// The outcome slots recorded so far, sensitive ones left out.
    pub slots: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HandoffLine {
    pub speaker: &'static str,
    pub text: String,
}
