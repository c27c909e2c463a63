//! Simulated TTS: audible, speech-band, vowel-like audio whose length follows
//! the text (`ms_per_char`), streamed at a configurable first-byte latency and
//! real-time factor.
//!
//! The audio is cut from a bank of syllables rendered once per process, and
//! chunks are `Bytes` slices of that bank: synthesizing costs no allocation
//! and no DSP per call, which keeps the simulator out of load-test figures.

use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{AudioStream, TtsProvider};
use crate::providers::ProviderError;
use crate::ulaw;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimTtsSettings {
    /// Time to the first audio chunk of a sentence.
    pub first_byte_ms: u64,
    /// Synthesis time per second of audio (0.2 = five times faster than real time; 0 = instant).
    pub real_time_factor: f64,
    /// Audio length per character of text.
    pub ms_per_char: u32,
}

impl Default for SimTtsSettings {
    fn default() -> Self {
        Self {
            first_byte_ms: 120,
            real_time_factor: 0.2,
            ms_per_char: 60,
        }
    }
}

impl SimTtsSettings {
    /// Problems with these settings: `(field, reason)`, the field relative
    /// to the section the policy holds them in.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.first_byte_ms > 30_000 {
            errors.push((
                "first_byte_ms",
                format!("{} is over 30000", self.first_byte_ms),
            ));
        }
        if !(self.real_time_factor.is_finite() && (0.0..=10.0).contains(&self.real_time_factor)) {
            errors.push((
                "real_time_factor",
                format!("{} is outside 0..=10", self.real_time_factor),
            ));
        }
        if !(10..=500).contains(&self.ms_per_char) {
            errors.push((
                "ms_per_char",
                format!("{} is outside 10..=500", self.ms_per_char),
            ));
        }
        errors
    }
}

/// Chunk length: one syllable is two chunks.
const CHUNK_MS: usize = 100;
const CHUNK_BYTES: usize = CHUNK_MS * 8;
const SYLLABLE_BYTES: usize = 2 * CHUNK_BYTES;
const VOICED_BYTES: usize = 160 * 8;

/// (fundamental Hz, first formant Hz, second formant Hz) per syllable.
const SYLLABLES: [(f32, f32, f32); 8] = [
    (110.0, 730.0, 1090.0),
    (122.0, 270.0, 2290.0),
    (134.0, 530.0, 1840.0),
    (146.0, 570.0, 840.0),
    (158.0, 440.0, 1020.0),
    (170.0, 300.0, 870.0),
    (182.0, 660.0, 1720.0),
    (194.0, 490.0, 1350.0),
];

/// All syllables back to back: 160 ms voiced, 40 ms silence each.
static BANK: LazyLock<Bytes> = LazyLock::new(render_bank);

fn resonance(freq: f32, centre: f32, bandwidth: f32) -> f32 {
    let d = (freq - centre) / bandwidth;
    1.0 / (1.0 + d * d)
}

fn render_bank() -> Bytes {
    let mut out = Vec::with_capacity(SYLLABLES.len() * SYLLABLE_BYTES);
    let mut pcm = vec![0f32; VOICED_BYTES];
    for &(f0, f1, f2) in &SYLLABLES {
        pcm.iter_mut().for_each(|s| *s = 0.0);
        let mut h = 1.0f32;
        while h * f0 < 3400.0 {
            let f = h * f0;
            let amp = resonance(f, f1, 90.0) + 0.6 * resonance(f, f2, 120.0) + 0.02;
            let w = 2.0 * std::f32::consts::PI * f / 8000.0;
            for (n, s) in pcm.iter_mut().enumerate() {
                *s += amp * (w * n as f32).sin();
            }
            h += 1.0;
        }
        let peak = pcm.iter().fold(0f32, |m, s| m.max(s.abs())).max(1e-6);
        for (n, s) in pcm.iter().enumerate() {
            // Raised-cosine envelope: a syllable, not a beep.
            let env =
                0.5 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / VOICED_BYTES as f32).cos();
            out.push(ulaw::encode((s / peak * env * 14000.0) as i16));
        }
        out.resize(out.len() + (SYLLABLE_BYTES - VOICED_BYTES), ulaw::SILENCE);
    }
    Bytes::from(out)
}

/// The chunks (as bank offsets) for `text`: deterministic, `ms_per_char` long.
fn chunk_offsets(text: &str, ms_per_char: u32) -> impl Iterator<Item = usize> + use<> {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count().max(1);
    let chunks = (chars * ms_per_char as usize).div_ceil(CHUNK_MS);
    let mut seed = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut syllable = 0;
    (0..chunks).map(move |i| {
        if i % 2 == 0 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            syllable = (seed >> 33) as usize % SYLLABLES.len();
        }
        syllable * SYLLABLE_BYTES + (i % 2) * CHUNK_BYTES
    })
}

pub struct SimTts {
    settings: SimTtsSettings,
}

impl SimTts {
    pub fn new(settings: SimTtsSettings) -> Self {
        LazyLock::force(&BANK);
        Self { settings }
    }

    /// Audio length for `text`.
    pub fn duration(&self, text: &str) -> Duration {
        Duration::from_millis(
            (chunk_offsets(text, self.settings.ms_per_char).count() * CHUNK_MS) as u64,
        )
    }
}

#[async_trait]
impl TtsProvider for SimTts {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    async fn synthesize(&self, text: &str) -> Result<AudioStream, ProviderError> {
        let first = Duration::from_millis(self.settings.first_byte_ms);
        let per_chunk =
            Duration::from_secs_f64(CHUNK_MS as f64 / 1000.0 * self.settings.real_time_factor);
        let bank = BANK.clone();
        let offsets = chunk_offsets(text, self.settings.ms_per_char);
        Ok(futures::stream::iter(offsets.enumerate())
            .then(move |(i, off)| {
                let chunk = bank.slice(off..off + CHUNK_BYTES);
                let wait = if i == 0 { first + per_chunk } else { per_chunk };
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Ok(chunk)
                }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tts(first_byte_ms: u64, rtf: f64) -> SimTts {
        SimTts::new(SimTtsSettings {
            first_byte_ms,
            real_time_factor: rtf,
            ms_per_char: 60,
        })
    }

    async fn chunks(t: &SimTts, text: &str) -> Vec<Bytes> {
        let stream = t.synthesize(text).await.unwrap();
        stream.map(|c| c.unwrap()).collect().await
    }

    #[tokio::test]
    async fn length_follows_text_and_audio_is_audible() {
        let t = tts(0, 0.0);
        let short = chunks(&t, "Hi.").await;
        let long = chunks(&t, "This is a much longer sentence to say.").await;
        let len = |v: &[Bytes]| v.iter().map(Bytes::len).sum::<usize>();
        assert_eq!(len(&short), 200 * 8);
        assert!(len(&long) > 5 * len(&short));
        let all: Vec<i16> = long
            .iter()
            .flat_map(|c| c.iter().map(|&b| ulaw::decode(b)))
            .collect();
        let rms = (all.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
        assert!(rms > 1000.0, "rms {rms}");
    }

    #[tokio::test]
    async fn deterministic() {
        let t = tts(0, 0.0);
        assert_eq!(
            chunks(&t, "Same text.").await,
            chunks(&t, "Same text.").await
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paced_by_first_byte_and_real_time_factor() {
        let t = tts(100, 0.5);
        let start = tokio::time::Instant::now();
        let mut s = t.synthesize("abcd").await.unwrap(); // 240 ms -> 3 chunks
        s.next().await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(150));
        while s.next().await.is_some() {}
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(t.duration("abcd"), Duration::from_millis(300));
    }
}
