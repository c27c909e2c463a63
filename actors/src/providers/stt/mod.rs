//! Speech-to-text: one streaming session per call, and a per-utterance
//! transcriber for when the stream is down.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::ProviderError;

pub mod deepgram;
pub mod openai;
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
    /// considers the caller's utterance complete. `languages`: each word's
    /// BCP 47 tag, when the provider reports them (Deepgram's `multi`).
    Final {
        text: String,
        utterance_end: bool,
        languages: Vec<String>,
    },
    /// The session failed; the `Stt` actor reconnects.
    Error(ProviderError),
}

/// The sending half of a session. Methods must not block the caller: an
/// implementation queues (boundedly) or drops and reports an error.
pub trait SttInput: Send {
    /// Caller audio, μ-law 8 kHz mono. `Bytes` so a session that queues it
    /// shares the buffer the `Stt` actor keeps for replay instead of copying.
    fn audio(&mut self, ulaw: &Bytes);
    /// Hark's VAD heard the caller stop talking: finish the utterance now.
    fn end_of_speech(&mut self, speech: SpeechInfo);
    /// The call is over; flush and close.
    fn close(&mut self);
}

pub struct SttSession {
    pub input: Box<dyn SttInput>,
    /// Ends when the session does; an error arrives as [`SttEvent::Error`] first.
    pub events: BoxStream<'static, SttEvent>,
}

#[async_trait]
pub trait SttProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn is_simulated(&self) -> bool {
        false
    }
    /// Whether a session can lose audio it was sent (a socket that drops).
    /// Then the `Stt` actor keeps the current utterance to replay it into
    /// the next session; an in-process session cannot, and costs no copy.
    fn sessions_can_drop(&self) -> bool {
        true
    }
    async fn connect(&self) -> Result<SttSession, ProviderError>;
    /// Reachability, credentials, model; a one-line description when healthy.
    async fn check(&self) -> Result<String, ProviderError> {
        Ok("simulated".into())
    }
}

/// Transcribes one finished utterance (μ-law 8 kHz).
#[async_trait]
pub trait BatchStt: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn transcribe(&self, ulaw: &[u8]) -> Result<String, ProviderError>;
    async fn check(&self) -> Result<String, ProviderError>;
}
