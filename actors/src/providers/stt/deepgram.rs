//! Deepgram live transcription (`/v1/listen` over WebSocket) through the
//! `deepgram` crate: μ-law 8 kHz straight from Twilio, interim results,
//! VAD events, `Finalize` when Hark's VAD ends the caller's turn, and the
//! crate's keep-alives while no audio flows (Deepgram closes a silent socket
//! after about 10 s).
//!
//! Turn-taking stays with Hark's VAD: a final result answering `Finalize`
//! (`from_finalize`) completes the utterance. Deepgram does not promise that
//! answer when it holds no unfinalized audio — the usual case when its own
//! endpointing already closed the utterance with `speech_final` during the
//! silence Hark's VAD waits out — so a `Finalize` that finds the stream
//! settled completes the utterance at once.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deepgram::common::options::{Encoding, Endpointing, Language, Model, Options};
use deepgram::common::stream_response::StreamResponse;
use deepgram::listen::websocket::WebsocketHandle;
use futures::StreamExt;
use futures::channel::mpsc as fmpsc;
use tokio::sync::mpsc;

use super::{SpeechInfo, SttEvent, SttInput, SttProvider, SttSession};
use crate::call::CallIds;
use crate::policy_file::DeepgramSettings;
use crate::providers::{Endpoint, ProviderError, Secret};

/// Audio batches (100 ms each) queued for the socket: 2 s.
const QUEUE: usize = 20;

pub struct Deepgram {
    client: deepgram::Deepgram,
    http: reqwest::Client,
    base: String,
    key: Secret,
    settings: DeepgramSettings,
    connect_timeout: Duration,
}

impl Deepgram {
    pub fn new(
        endpoint: &Endpoint,
        key: Secret,
        settings: DeepgramSettings,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let client =
            deepgram::Deepgram::with_base_url_and_api_key(endpoint.http_base(), key.expose())
                .map_err(|e| format!("providers.deepgram.base_url: {e}"))?;
        Ok(Self {
            client,
            http: reqwest::Client::new(),
            base: endpoint.http_base().to_owned(),
            key,
            settings,
            connect_timeout,
        })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, ProviderError> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Token {}", self.key.expose()))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        match res.status().as_u16() {
            200 => Ok(res),
            s => Err(ProviderError::from_status(s, path)),
        }
    }
}

fn connect_error(e: deepgram::DeepgramError) -> ProviderError {
    let text = e.to_string();
    if text.contains("401") || text.contains("403") {
        ProviderError::Auth(text)
    } else if text.contains("429") {
        ProviderError::RateLimited
    } else {
        ProviderError::Connect(text)
    }
}

enum Command {
    Audio(Bytes),
    Finalize,
    Close,
}

struct DeepgramInput {
    tx: mpsc::Sender<Command>,
    events: fmpsc::UnboundedSender<SttEvent>,
}

impl DeepgramInput {
    fn send(&mut self, cmd: Command) {
        if self.tx.try_send(cmd).is_err() {
            // The socket has fallen 2 s behind (or is gone): report it, the
            // Stt actor reconnects and replays the utterance.
            let _ = self
                .events
                .unbounded_send(SttEvent::Error(ProviderError::Timeout(
                    Duration::from_secs(2),
                )));
        }
    }
}

impl SttInput for DeepgramInput {
    fn audio(&mut self, ulaw: &[u8]) {
        self.send(Command::Audio(Bytes::copy_from_slice(ulaw)));
    }

    fn end_of_speech(&mut self, _speech: SpeechInfo) {
        self.send(Command::Finalize);
    }

    fn close(&mut self) {
        let _ = self.tx.try_send(Command::Close);
    }
}

/// Whether a response leaves nothing unfinalized: a `speech_final` result.
fn settles(response: &StreamResponse) -> Option<bool> {
    match response {
        StreamResponse::TranscriptResponse {
            is_final,
            speech_final,
            ..
        } => Some(*is_final && *speech_final),
        _ => None,
    }
}

fn event(response: StreamResponse) -> Option<SttEvent> {
    match response {
        StreamResponse::TranscriptResponse {
            is_final,
            from_finalize,
            channel,
            ..
        } => {
            let text = channel
                .alternatives
                .into_iter()
                .next()
                .map(|a| a.transcript)
                .unwrap_or_default();
            Some(if is_final || from_finalize {
                SttEvent::Final {
                    text,
                    utterance_end: from_finalize,
                }
            } else {
                SttEvent::Interim { text }
            })
        }
        _ => None,
    }
}

/// Owns the socket: sends queued commands, forwards results.
async fn drive(
    mut handle: WebsocketHandle,
    mut commands: mpsc::Receiver<Command>,
    events: fmpsc::UnboundedSender<SttEvent>,
) {
    let fail = |e: ProviderError| {
        let _ = events.unbounded_send(SttEvent::Error(e));
    };
    // The last result was `speech_final` and nothing has come since.
    let mut settled = false;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let sent = match cmd {
                    Some(Command::Audio(audio)) => handle.send_data(audio.to_vec()).await,
                    Some(Command::Finalize) => {
                        let sent = handle.finalize().await;
                        if settled {
                            let _ = events.unbounded_send(SttEvent::Final {
                                text: String::new(),
                                utterance_end: true,
                            });
                        }
                        sent
                    }
                    Some(Command::Close) | None => {
                        let _ = handle.close_stream().await;
                        return;
                    }
                };
                if let Err(e) = sent {
                    return fail(ProviderError::Connect(e.to_string()));
                }
            }
            response = handle.receive() => match response {
                Some(Ok(StreamResponse::TerminalResponse { .. })) => return fail(ProviderError::Closed),
                Some(Ok(r)) => {
                    if let Some(s) = settles(&r) {
                        settled = s;
                    }
                    if let Some(e) = event(r) {
                        let _ = events.unbounded_send(e);
                    }
                }
                Some(Err(e)) => return fail(ProviderError::Protocol(e.to_string())),
                None => return fail(ProviderError::Closed),
            }
        }
    }
}

#[async_trait]
impl SttProvider for Deepgram {
    fn name(&self) -> &'static str {
        "deepgram"
    }

    async fn connect(&self, _call: &CallIds) -> Result<SttSession, ProviderError> {
        let options = Options::builder()
            .model(Model::from(self.settings.model.clone()))
            .language(Language::from(self.settings.language.clone()))
            .smart_format(self.settings.smart_format)
            .build();
        let builder = self
            .client
            .transcription()
            .stream_request_with_options(options)
            .encoding(Encoding::Mulaw)
            .sample_rate(8000)
            .channels(1)
            .interim_results(true)
            .vad_events(true)
            .endpointing(Endpointing::CustomDurationMs(300))
            .utterance_end_ms(self.settings.utterance_end_ms)
            .keep_alive();
        let handle = tokio::time::timeout(self.connect_timeout, builder.handle())
            .await
            .map_err(|_| ProviderError::Timeout(self.connect_timeout))?
            .map_err(connect_error)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (events_tx, events) = fmpsc::unbounded();
        tokio::spawn(drive(handle, rx, events_tx.clone()));
        Ok(SttSession {
            input: Box::new(DeepgramInput {
                tx,
                events: events_tx,
            }),
            events: events.boxed(),
        })
    }

    async fn check(&self) -> Result<String, ProviderError> {
        self.get("/v1/projects").await?;
        let models: serde_json::Value = self
            .get("/v1/models")
            .await?
            .json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let known = models["stt"].as_array().is_some_and(|stt| {
            stt.iter().any(|m| {
                m["canonical_name"] == self.settings.model.as_str()
                    || m["name"] == self.settings.model.as_str()
            })
        });
        if known {
            Ok(format!("model {} available", self.settings.model))
        } else {
            Err(ProviderError::NotFound(format!(
                "model {}",
                self.settings.model
            )))
        }
    }
}
