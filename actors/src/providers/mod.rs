//! Speech and language providers behind small traits, one file per provider.
//!
//! The actors only see these traits; which implementation serves a call is
//! decided when the policy is loaded. `sim` implementations are real code paths
//! with configurable latency, used when no provider is configured.

use std::sync::Arc;
use std::time::Duration;

pub mod llm;
pub mod stt;
pub mod tts;

pub use llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream};
pub use stt::{SpeechInfo, SttEvent, SttInput, SttProvider, SttSession};
pub use tts::{AudioStream, TtsProvider};

use crate::policy_file::{PolicyFile, ProviderKind};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("stream closed unexpectedly")]
    Closed,
}

impl ProviderError {
    /// The `kind` label of provider error metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Connect(_) => "connect",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Status(_) => "status",
            ProviderError::Protocol(_) => "protocol",
            ProviderError::Closed => "closed",
        }
    }
}

/// The providers serving one policy's calls.
#[derive(Clone)]
pub struct Providers {
    pub stt: Arc<dyn SttProvider>,
    pub llm: Arc<dyn LlmProvider>,
    pub tts: Arc<dyn TtsProvider>,
}

impl Providers {
    /// Builds the providers a policy names.
    pub fn for_policy(policy: &PolicyFile) -> Self {
        let sim = &policy.sim;
        let stt: Arc<dyn SttProvider> = match policy.providers.stt {
            ProviderKind::Sim => Arc::new(stt::sim::SimStt::new(sim.stt.clone())),
        };
        let llm: Arc<dyn LlmProvider> = match policy.providers.llm {
            ProviderKind::Sim => Arc::new(llm::sim::SimLlm::new(sim.llm.clone())),
        };
        let tts: Arc<dyn TtsProvider> = match policy.providers.tts {
            ProviderKind::Sim => Arc::new(tts::sim::SimTts::new(sim.tts.clone())),
        };
        Self { stt, llm, tts }
    }

    /// `(role, provider name, simulated?)` for start-up banners and `/readyz`.
    pub fn describe(&self) -> [(&'static str, &'static str, bool); 3] {
        [
            ("stt", self.stt.name(), self.stt.is_simulated()),
            ("llm", self.llm.name(), self.llm.is_simulated()),
            ("tts", self.tts.name(), self.tts.is_simulated()),
        ]
    }
}
