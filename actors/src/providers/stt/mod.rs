//! Streaming speech-to-text: one session per call.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::ProviderError;
use crate::call::CallIds;

pub mod sim;

/// What Hark's VAD measured of the utterance that just ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechInfo {
    /// Voiced audio from speech start to the last voiced frame.
    pub speech_ms: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A provisional transcript of the utterance in progress.
    Interim { text: String },
    /// Final text for a stretch of speech. `utterance_end` says the provider
    /// considers the caller's utterance complete.
    Final { text: String, utterance_end: bool },
    /// The session failed; the `Stt` actor decides whether to reconnect.
    Error(ProviderError),
}

/// The sending half of a session. Methods must not block the caller: an
/// implementation buffers (boundedly) or drops and counts.
pub trait SttInput: Send {
    /// Caller audio, μ-law 8 kHz mono.
    fn audio(&mut self, ulaw: &[u8]);
    /// Hark's VAD heard the caller stop talking: finish the utterance now.
    fn end_of_speech(&mut self, speech: SpeechInfo);
    /// The call is over; flush and close.
    fn close(&mut self);
}

pub struct SttSession {
    pub input: Box<dyn SttInput>,
    pub events: BoxStream<'static, SttEvent>,
}

#[async_trait]
pub trait SttProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn is_simulated(&self) -> bool {
        false
    }
    async fn connect(&self, call: &CallIds) -> Result<SttSession, ProviderError>;
}
