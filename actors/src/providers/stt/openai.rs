//! OpenAI transcription (`/v1/audio/transcriptions`, `gpt-4o-mini-transcribe`
//! or `whisper-1`) through async-openai: one finished utterance at a time,
//! used while the streaming STT is down.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::audio::{AudioInput, AudioResponseFormat, CreateTranscriptionRequest};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BatchStt;
use crate::providers::{
    Endpoint, ProviderError, Secret, check_openai_model, no_retries, openai_error,
};
use crate::ulaw;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiSttSettings {
    /// `gpt-4o-mini-transcribe` or `whisper-1`.
    pub model: String,
    pub language: String,
}

impl Default for OpenAiSttSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini-transcribe".into(),
            language: "en".into(),
        }
    }
}

pub struct OpenAiStt {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    base: String,
    key: Secret,
    settings: OpenAiSttSettings,
}

impl OpenAiStt {
    pub fn new(endpoint: &Endpoint, key: Secret, settings: OpenAiSttSettings) -> Self {
        let config = OpenAIConfig::new()
            .with_api_base(endpoint.http_base())
            .with_api_key(key.expose());
        let http = reqwest::Client::new();
        Self {
            client: no_retries(config, &http),
            http,
            base: endpoint.http_base().to_owned(),
            key,
            settings,
        }
    }
}

/// μ-law 8 kHz as a 16-bit PCM WAV file, which every transcription model takes.
pub fn wav(ulaw_audio: &[u8]) -> Vec<u8> {
    let data_len = (ulaw_audio.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &b in ulaw_audio {
        out.extend_from_slice(&ulaw::decode(b).to_le_bytes());
    }
    out
}

/// The transcript of a `json` transcription response (outside input).
pub fn text_of(body: &[u8]) -> Result<String, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Transcription {
        text: String,
    }
    serde_json::from_slice::<Transcription>(body)
        .map(|t| t.text)
        .map_err(|e| ProviderError::Protocol(format!("bad transcription JSON: {e}")))
}

#[async_trait]
impl BatchStt for OpenAiStt {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn transcribe(&self, ulaw_audio: &[u8]) -> Result<String, ProviderError> {
        let request = CreateTranscriptionRequest {
            file: AudioInput::from_vec_u8("utterance.wav".into(), wav(ulaw_audio)),
            model: self.settings.model.clone(),
            // Empty: the model detects it (a call in several languages).
            language: (!self.settings.language.is_empty()).then(|| self.settings.language.clone()),
            response_format: Some(AudioResponseFormat::Json),
            ..Default::default()
        };
        // Raw, then only `text`: async-openai's typed response requires a
        // `usage` object that OpenAI-compatible servers (and older models)
        // may leave out.
        let body = self
            .client
            .audio()
            .transcription()
            .create_raw(request)
            .await
            .map_err(openai_error)?;
        text_of(&body)
    }

    async fn check(&self) -> Result<String, ProviderError> {
        check_openai_model(&self.http, &self.base, &self.key, &self.settings.model).await?;
        Ok(format!("model {} available", self.settings.model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_text_with_or_without_usage() {
        let with = br#"{"text":"hello there","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":3,"total_tokens":17}}"#;
        assert_eq!(text_of(with).unwrap(), "hello there");
        assert_eq!(text_of(br#"{"text":"hi"}"#).unwrap(), "hi");
        assert!(matches!(text_of(b"{oops"), Err(ProviderError::Protocol(_))));
    }

    #[test]
    fn wav_header_describes_8khz_16bit_mono() {
        let w = wav(&[0xFF; 800]);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes([w[24], w[25], w[26], w[27]]), 8000);
        assert_eq!(u16::from_le_bytes([w[34], w[35]]), 16);
        assert_eq!(u32::from_le_bytes([w[40], w[41], w[42], w[43]]), 1600);
        assert_eq!(w.len(), 44 + 1600);
    }
}
