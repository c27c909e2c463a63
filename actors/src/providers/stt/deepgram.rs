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

use serde::{Deserialize, Serialize};
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
use crate::providers::{Endpoint, ProviderError, Secret};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeepgramSettings {
    /// `nova-3` and `nova-2-phonecall` do well on 8 kHz phone audio.
    pub model: String,
    pub language: String,
    /// Deepgram's own utterance end (Hark's VAD decides turns; this is a backstop).
    pub utterance_end_ms: u16,
    pub smart_format: bool,
}

impl Default for DeepgramSettings {
    fn default() -> Self {
        Self {
            model: "nova-3".into(),
            language: "en-US".into(),
            utterance_end_ms: 1000,
            smart_format: true,
        }
    }
}

/// Audio batches (100 ms each) queued for the socket: 2 s.
const QUEUE: usize = 20;
/// Longest any one hand-off to the socket may take before the session is
/// declared lost: the driver must never wait forever on a stuck socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a graceful close (`CloseStream`) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// The driver task. Dropping the input aborts it, unless `close` asked it
    /// to end gracefully (then it ends within `CLOSE_TIMEOUT` by itself).
    driver: tokio::task::JoinHandle<()>,
    closing: bool,
}

impl Drop for DeepgramInput {
    fn drop(&mut self) {
        if !self.closing {
            self.driver.abort();
        }
    }
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
    fn audio(&mut self, ulaw: &Bytes) {
        self.send(Command::Audio(ulaw.clone()));
    }

    fn end_of_speech(&mut self, _speech: SpeechInfo) {
        self.send(Command::Finalize);
    }

    fn close(&mut self) {
        self.closing = self.tx.try_send(Command::Close).is_ok();
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
            let (text, languages) = channel
                .alternatives
                .into_iter()
                .next()
                .map(|a| {
                    // Per word, in `language=multi` only.
                    let languages = a.words.into_iter().filter_map(|w| w.language).collect();
                    (a.transcript, languages)
                })
                .unwrap_or_default();
            Some(if is_final || from_finalize {
                SttEvent::Final {
                    text,
                    utterance_end: from_finalize,
                    languages,
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
                    Some(Command::Audio(audio)) => {
                        tokio::time::timeout(SEND_TIMEOUT, handle.send_data(audio.to_vec())).await
                    }
                    Some(Command::Finalize) => {
                        let sent = tokio::time::timeout(SEND_TIMEOUT, handle.finalize()).await;
                        if settled {
                            let _ = events.unbounded_send(SttEvent::Final {
                                text: String::new(),
                                utterance_end: true,
                                languages: Vec::new(),
                            });
                        }
                        sent
                    }
                    Some(Command::Close) | None => {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, handle.close_stream()).await;
                        return;
                    }
                };
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return fail(ProviderError::Connect(e.to_string())),
                    Err(_) => return fail(ProviderError::Timeout(SEND_TIMEOUT)),
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

/// The driver task around a connected socket, its input and its events.
fn session(handle: WebsocketHandle) -> (DeepgramInput, fmpsc::UnboundedReceiver<SttEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (events_tx, events) = fmpsc::unbounded();
    let driver = tokio::spawn(drive(handle, rx, events_tx.clone()));
    let input = DeepgramInput {
        tx,
        events: events_tx,
        driver,
        closing: false,
    };
    (input, events)
}

#[async_trait]
impl SttProvider for Deepgram {
    fn name(&self) -> &'static str {
        "deepgram"
    }

    async fn connect(&self) -> Result<SttSession, ProviderError> {
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
        let (input, events) = session(handle);
        Ok(SttSession {
            input: Box::new(input),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::endpoints::Endpoint;

    /// A final `Results` message as Deepgram sends it with `language=multi`:
    /// each word carries its language.
    #[test]
    fn a_multilingual_final_carries_each_words_language() {
        let json = serde_json::json!({
            "type": "Results", "channel_index": [0, 1], "duration": 1.2, "start": 0.0,
            "is_final": true, "speech_final": true, "from_finalize": true,
            "channel": { "alternatives": [{
                "transcript": "mujhe plan chahiye please", "confidence": 0.97,
                "languages": ["hi", "en"],
                "words": [
                    { "word": "mujhe", "start": 0.0, "end": 0.3, "confidence": 0.9, "language": "hi" },
                    { "word": "plan", "start": 0.3, "end": 0.6, "confidence": 0.9, "language": "en" },
                    { "word": "chahiye", "start": 0.6, "end": 0.9, "confidence": 0.9, "language": "hi" },
                    { "word": "please", "start": 0.9, "end": 1.2, "confidence": 0.9, "language": "en" }
                ]
            }]},
            "metadata": { "request_id": "r", "model_info": { "name": "2-general-nova", "version": "v", "arch": "nova-2" }, "model_uuid": "u" }
        });
        let response: StreamResponse = serde_json::from_value(json).unwrap();
        let Some(SttEvent::Final {
            text, languages, ..
        }) = event(response)
        else {
            panic!("a final");
        };
        assert_eq!(text, "mujhe plan chahiye please");
        assert_eq!(languages, ["hi", "en", "hi", "en"]);
    }

    /// A Deepgram that accepts the socket, then never reads from it, with a
    /// tiny receive buffer: the crate's worker soon blocks on the socket, and
    /// then the driver on the crate's full channel.
    async fn deaf_server() -> (String, tokio::task::JoinHandle<()>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(8).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            std::future::pending::<()>().await;
        });
        (url, task)
    }

    #[tokio::test]
    async fn dropping_a_session_stuck_on_its_socket_ends_its_driver() {
        let (url, _server) = deaf_server().await;
        let endpoint = Endpoint {
            base_url: url,
            api_key_env: "DEEPGRAM_API_KEY".into(),
        };
        let dg = Deepgram::new(
            &endpoint,
            Secret::new("k"),
            DeepgramSettings::default(),
            Duration::from_secs(2),
        )
        .unwrap();
        let builder = dg
            .client
            .transcription()
            .stream_request_with_options(Options::builder().build())
            .encoding(Encoding::Mulaw);
        let (mut input, mut events) = session(builder.handle().await.unwrap());
        // Feed audio until the driver stops taking it: it is stuck.
        let chunk = Bytes::from(vec![0xFFu8; 64 * 1024]);
        let mut stuck = false;
        for _ in 0..2000 {
            input.audio(&chunk);
            tokio::time::sleep(Duration::from_millis(1)).await;
            if input.tx.capacity() == 0 {
                stuck = true;
                break;
            }
        }
        assert!(stuck, "the driver never blocked");
        drop(input);
        // The driver holds a sender of the events: when it is gone, they end.
        let ended = tokio::time::timeout(Duration::from_millis(500), async {
            while events.next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the driver outlived its session");
    }
}
