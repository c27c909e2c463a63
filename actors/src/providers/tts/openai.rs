//! OpenAI speech (`/v1/audio/speech`) as a fallback TTS: raw 24 kHz 16-bit
//! PCM, resampled to 8 kHz with rubato, then μ-law.
//!
//! The response body is streamed as it arrives (async-openai's `create`
//! waits for the whole body, and its SSE variant only works with
//! `gpt-4o-mini-tts`), so a sentence starts playing on its first chunk.

use async_trait::async_trait;
use audioadapter_buffers::direct::InterleavedSlice;
use bytes::Bytes;
use futures::StreamExt;
use rubato::{Fft, FixedSync, Resampler};
use serde::{Deserialize, Serialize};

use super::{AudioStream, TtsProvider};
use crate::providers::{Endpoint, ProviderError, Secret, check_openai_model};
use crate::ulaw;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTtsSettings {
    pub model: String,
    pub voice: String,
}

impl Default for OpenAiTtsSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini-tts".into(),
            voice: "alloy".into(),
        }
    }
}

/// 20 ms at 24 kHz in, 20 ms at 8 kHz out.
const IN_FRAMES: usize = 480;

pub struct OpenAiTts {
    http: reqwest::Client,
    base: String,
    key: Secret,
    settings: OpenAiTtsSettings,
}

impl OpenAiTts {
    pub fn new(endpoint: &Endpoint, key: Secret, settings: OpenAiTtsSettings) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: endpoint.http_base().to_owned(),
            key,
            settings,
        }
    }
}

/// 24 kHz PCM16 (little-endian bytes, any chunking) → 8 kHz μ-law.
pub struct Downsampler {
    resampler: Fft<f32>,
    /// A byte of a sample split across chunks.
    odd: Option<u8>,
    pending: Vec<f32>,
    out: Vec<f32>,
    /// Output samples still owed to the resampler's delay.
    delay: usize,
}

impl Downsampler {
    pub fn new() -> Result<Self, ProviderError> {
        let resampler = Fft::<f32>::new(24_000, 8_000, IN_FRAMES, 1, FixedSync::Input)
            .map_err(|e| ProviderError::Protocol(format!("resampler: {e}")))?;
        let out = vec![0.0; resampler.output_frames_max()];
        let delay = resampler.output_delay();
        Ok(Self {
            resampler,
            odd: None,
            pending: Vec::with_capacity(IN_FRAMES * 2),
            out,
            delay,
        })
    }

    fn run(&mut self, frames: usize, mut emit: impl FnMut(&[f32])) -> Result<(), ProviderError> {
        let input = InterleavedSlice::new(&self.pending[..IN_FRAMES], 1, IN_FRAMES)
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let n_out = self.out.len();
        let mut output = InterleavedSlice::new_mut(&mut self.out, 1, n_out)
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let indexing = rubato::Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: (frames < IN_FRAMES).then_some(frames),
            active_channels_mask: None,
        };
        let (_, written) = self
            .resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| ProviderError::Protocol(format!("resampler: {e}")))?;
        let skip = self.delay.min(written);
        self.delay -= skip;
        emit(&self.out[skip..written]);
        self.pending.drain(..IN_FRAMES.min(self.pending.len()));
        Ok(())
    }

    fn encode(samples: &[f32]) -> Vec<u8> {
        samples
            .iter()
            .map(|&s| ulaw::encode((s * 32767.0).clamp(-32768.0, 32767.0) as i16))
            .collect()
    }

    /// Takes more PCM; returns the μ-law produced so far.
    pub fn push(&mut self, pcm: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let mut bytes = pcm;
        if let (Some(lo), Some(&hi)) = (self.odd, bytes.first()) {
            self.pending
                .push(i16::from_le_bytes([lo, hi]) as f32 / 32768.0);
            self.odd = None;
            bytes = &bytes[1..];
        }
        let mut pairs = bytes.chunks_exact(2);
        for p in &mut pairs {
            self.pending
                .push(i16::from_le_bytes([p[0], p[1]]) as f32 / 32768.0);
        }
        self.odd = pairs.remainder().first().copied();
        let mut out = Vec::new();
        while self.pending.len() >= IN_FRAMES {
            self.run(IN_FRAMES, |s| out.extend(Self::encode(s)))?;
        }
        Ok(out)
    }

    /// Flushes what is left (padding the last chunk with silence).
    pub fn finish(&mut self) -> Result<Vec<u8>, ProviderError> {
        let mut out = Vec::new();
        let left = self.pending.len();
        if left > 0 {
            self.pending.resize(IN_FRAMES, 0.0);
            self.run(left, |s| {
                out.extend(Self::encode(&s[..s.len().min(left / 3 + 1)]))
            })?;
        }
        Ok(out)
    }
}

#[async_trait]
impl TtsProvider for OpenAiTts {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn synthesize(&self, text: &str) -> Result<AudioStream, ProviderError> {
        let body = serde_json::json!({
            "model": self.settings.model,
            "input": text,
            "voice": self.settings.voice,
            "response_format": "pcm",
        });
        let res = self
            .http
            .post(format!("{}/audio/speech", self.base))
            .bearer_auth(self.key.expose())
            .json(&body)
            .send()
            .await?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(ProviderError::from_status(status, "audio/speech"));
        }
        let down = Downsampler::new()?;
        let body = res.bytes_stream().boxed();
        // Body chunks in, μ-law chunks out; the resampler's tail at the end.
        let audio = futures::stream::unfold(Some((body, down)), |state| async move {
            let (mut body, mut down) = state?;
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => match down.push(&chunk) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Some((Ok(Bytes::from(out)), Some((body, down)))),
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e.into()), None)),
                    None => {
                        return match down.finish() {
                            Ok(tail) if tail.is_empty() => None,
                            Ok(tail) => Some((Ok(Bytes::from(tail)), None)),
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                }
            }
        });
        Ok(audio.boxed())
    }

    async fn check(&self) -> Result<String, ProviderError> {
        check_openai_model(&self.http, &self.base, &self.key, &self.settings.model).await?;
        Ok(format!(
            "model {} available, voice {}",
            self.settings.model, self.settings.voice
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsamples_24k_pcm_to_8k_ulaw_keeping_duration_and_tone() {
        // One second of a 440 Hz tone at 24 kHz, fed in odd-sized chunks.
        let pcm: Vec<u8> = (0..24_000)
            .flat_map(|n| {
                let s = (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 24_000.0).sin();
                ((s * 12_000.0) as i16).to_le_bytes()
            })
            .collect();
        let mut d = Downsampler::new().unwrap();
        let mut out = Vec::new();
        for chunk in pcm.chunks(1001) {
            out.extend(d.push(chunk).unwrap());
        }
        out.extend(d.finish().unwrap());
        assert!(
            (7_800..=8_100).contains(&out.len()),
            "{} samples",
            out.len()
        );
        // Still a 440 Hz tone: count zero crossings over the middle half second.
        let s: Vec<i16> = out.iter().map(|&b| ulaw::decode(b)).collect();
        let mid = &s[2000..6000];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!(
            (430..=450).contains(&crossings),
            "{crossings} crossings in 0.5 s"
        );
    }
}
