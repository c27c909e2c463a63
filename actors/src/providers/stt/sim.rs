//! Simulated STT: one final transcript per utterance Hark's VAD detects.
//!
//! Deterministic: the n-th utterance of a call gets the n-th scripted line
//! (cycling), or a placeholder naming its length. The transcript arrives
//! `final_delay_ms` after the end of speech, like a real provider's finalization.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::channel::mpsc;

use super::{SpeechInfo, SttEvent, SttInput, SttProvider, SttSession};
use crate::providers::ProviderError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimSttSettings {
    /// Delay from the end of the caller's speech to the final transcript.
    pub final_delay_ms: u64,
    /// Transcripts for successive utterances (cycled); empty gives a placeholder
    /// that names the utterance length.
    pub script: Vec<String>,
    /// Tag each word with a language, as Deepgram does with `language=multi`:
    /// `hi` for Devanagari, `en` for anything else (so romanised Hindi reads
    /// as English, as it often does from the real service).
    pub report_languages: bool,
    /// Speech after which an interim transcript (the utterance's first
    /// word) comes, as a streaming STT sends them; 0: none.
    pub interim_after_ms: u64,
}

impl Default for SimSttSettings {
    fn default() -> Self {
        Self {
            final_delay_ms: 150,
            script: Vec::new(),
            report_languages: false,
            interim_after_ms: 300,
        }
    }
}

/// Each word's language, told by its script.
fn word_languages(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| {
            let devanagari = w.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c));
            if devanagari { "hi" } else { "en" }.to_owned()
        })
        .collect()
}

impl SimSttSettings {
    /// Problems with these settings: `(field, reason)`, the field relative
    /// to the section the policy holds them in.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.final_delay_ms > 10_000 {
            errors.push((
                "final_delay_ms",
                format!("{} is over 10000", self.final_delay_ms),
            ));
        }
        errors
    }
}

/// Lines a caller types, heard in place of speech (`hark policy simulate`).
pub type TypedLines = Arc<Mutex<VecDeque<String>>>;

pub struct SimStt {
    settings: SimSttSettings,
    typed: Option<TypedLines>,
}

impl SimStt {
    pub fn new(settings: SimSttSettings) -> Self {
        Self {
            settings,
            typed: None,
        }
    }

    /// Each utterance is heard as the next of `typed` (the script when
    /// none is queued): text in place of audio, through the same VAD,
    /// endpointing and turn taking as speech.
    pub fn typed(settings: SimSttSettings, typed: TypedLines) -> Self {
        Self {
            settings,
            typed: Some(typed),
        }
    }
}

#[async_trait]
impl SttProvider for SimStt {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    fn sessions_can_drop(&self) -> bool {
        false
    }

    async fn connect(&self) -> Result<SttSession, ProviderError> {
        let (tx, rx) = mpsc::unbounded();
        Ok(SttSession {
            input: Box::new(SimSttInput {
                settings: self.settings.clone(),
                typed: self.typed.clone(),
                tx,
                utterances: 0,
                audio_bytes: 0,
            }),
            events: rx.boxed(),
        })
    }
}

struct SimSttInput {
    settings: SimSttSettings,
    typed: Option<TypedLines>,
    tx: mpsc::UnboundedSender<SttEvent>,
    utterances: usize,
    audio_bytes: u64,
}

impl SimSttInput {
    /// The next utterance's transcript, if it is known before it ends.
    fn upcoming(&self) -> Option<String> {
        if let Some(typed) = &self.typed {
            return typed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .front()
                .cloned();
        }
        let script = &self.settings.script;
        script.get(self.utterances % script.len().max(1)).cloned()
    }

    fn transcript(&self, speech: SpeechInfo) -> String {
        let typed = self.typed.as_ref().and_then(|t| {
            t.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front()
        });
        if let Some(line) = typed {
            line
        } else if self.settings.script.is_empty() {
            format!(
                "something that took {:.1} seconds to say",
                speech.speech_ms as f64 / 1000.0
            )
        } else {
            self.settings.script[self.utterances % self.settings.script.len()].clone()
        }
    }
}

impl SttInput for SimSttInput {
    fn audio(&mut self, ulaw: &bytes::Bytes) {
        let before = self.audio_bytes;
        self.audio_bytes += ulaw.len() as u64;
        let at = self.settings.interim_after_ms * 8;
        if at > 0 && before < at && self.audio_bytes >= at {
            let first = self
                .upcoming()
                .and_then(|t| t.split_whitespace().next().map(str::to_owned));
            if let Some(text) = first {
                let _ = self.tx.unbounded_send(SttEvent::Interim { text });
            }
        }
    }

    fn end_of_speech(&mut self, speech: SpeechInfo) {
        self.audio_bytes = 0;
        let text = self.transcript(speech);
        let languages = if self.settings.report_languages {
            word_languages(&text)
        } else {
            Vec::new()
        };
        let event = SttEvent::Final {
            text,
            utterance_end: true,
            languages,
        };
        self.utterances += 1;
        let delay = Duration::from_millis(self.settings.final_delay_ms);
        if delay.is_zero() {
            let _ = self.tx.unbounded_send(event);
        } else {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.unbounded_send(event);
            });
        }
    }

    fn close(&mut self) {
        self.tx.close_channel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn script_lines_cycle_after_the_final_delay() {
        let stt = SimStt::new(SimSttSettings {
            final_delay_ms: 200,
            script: vec!["one".into(), "two".into()],
            report_languages: false,
            interim_after_ms: 0,
        });
        let mut s = stt.connect().await.unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            s.input.end_of_speech(SpeechInfo { speech_ms: 900 });
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            match s.events.next().await.unwrap() {
                SttEvent::Final { text, .. } => got.push(text),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, ["one", "two", "one"]);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn words_are_tagged_by_script_when_languages_are_reported() {
        let stt = SimStt::new(SimSttSettings {
            final_delay_ms: 0,
            script: vec!["मुझे plan चाहिए, okay?".into()],
            report_languages: true,
            interim_after_ms: 0,
        });
        let mut s = stt.connect().await.unwrap();
        s.input.end_of_speech(SpeechInfo { speech_ms: 900 });
        let Some(SttEvent::Final { languages, .. }) = s.events.next().await else {
            panic!("a final");
        };
        assert_eq!(languages, ["hi", "en", "hi", "en"]);
    }

    #[tokio::test]
    async fn an_interim_with_the_first_word_comes_after_some_speech() {
        let stt = SimStt::new(SimSttSettings {
            final_delay_ms: 0,
            script: vec!["what about fees".into()],
            report_languages: false,
            interim_after_ms: 300,
        });
        let mut s = stt.connect().await.unwrap();
        let chunk = bytes::Bytes::from(vec![0xFFu8; 800]); // 100 ms
        for _ in 0..5 {
            s.input.audio(&chunk);
        }
        s.input.end_of_speech(SpeechInfo { speech_ms: 500 });
        let first = s.events.next().await.unwrap();
        assert_eq!(
            first,
            SttEvent::Interim {
                text: "what".into()
            }
        );
        assert!(matches!(
            s.events.next().await,
            Some(SttEvent::Final { .. })
        ));
    }

    #[tokio::test]
    async fn placeholder_names_the_length() {
        let stt = SimStt::new(SimSttSettings {
            final_delay_ms: 0,
            script: vec![],
            report_languages: false,
            interim_after_ms: 0,
        });
        let mut s = stt.connect().await.unwrap();
        s.input.end_of_speech(SpeechInfo { speech_ms: 1500 });
        let Some(SttEvent::Final { text, .. }) = s.events.next().await else {
            panic!()
        };
        assert!(text.contains("1.5 seconds"), "{text}");
    }
}
