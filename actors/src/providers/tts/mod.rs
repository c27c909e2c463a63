//! Streaming speech synthesis, sentence by sentence.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::ProviderError;

pub mod elevenlabs;
pub mod openai;
pub mod sim;

/// μ-law 8 kHz mono chunks, in order.
pub type AudioStream = BoxStream<'static, Result<Bytes, ProviderError>>;

#[async_trait]
pub trait TtsProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn is_simulated(&self) -> bool {
        false
    }
    /// Starts synthesizing `text`. Dropping the stream abandons the request.
    async fn synthesize(&self, text: &str) -> Result<AudioStream, ProviderError>;
    /// Reachability, credentials, voice; a one-line description when healthy.
    async fn check(&self) -> Result<String, ProviderError> {
        Ok("simulated".into())
    }
}
