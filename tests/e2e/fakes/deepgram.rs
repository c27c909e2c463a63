//! Deepgram live transcription: `GET /v1/listen` upgraded to a WebSocket,
//! `Authorization: Token KEY`, μ-law 8 kHz binary audio in; `Results`
//! (interim and final, `speech_final` after `endpointing` ms of silence,
//! `from_finalize` answering a `Finalize` that finds unfinalized speech),
//! `SpeechStarted`, `UtteranceEnd` and, on `CloseStream`, `Metadata` out.
//! A socket that gets neither audio nor a message for the idle timeout is
//! closed with 1011, as Deepgram does (NET-0001). Also `GET /v1/projects`
//! and `GET /v1/models` for `hark doctor`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{FRAME, Fault, Faults, Server, is_speech, transcript};

pub const MODELS: &[&str] = &["nova-3", "nova-2-phonecall", "nova-2"];
const IDLE_REASON: &str = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001";

pub struct Shared {
    key: String,
    /// WebSocket sessions accepted.
    pub connections: AtomicUsize,
    pub keepalives: AtomicUsize,
    pub finalizes: AtomicUsize,
    pub close_streams: AtomicUsize,
    /// Query strings of accepted sessions.
    pub queries: Mutex<Vec<HashMap<String, String>>>,
    /// Every final transcript sent, in order.
    pub finals: Mutex<Vec<String>>,
    /// Per session: `DropAfter(ms)` cuts the TCP connection after that much
    /// audio, `Error` closes with 1011 after 1 s of audio, `Status(s)`
    /// refuses the upgrade, `Delay(d)` holds it, `Stall` never answers.
    pub faults: Faults,
    pub idle_timeout: Mutex<Duration>,
}

pub struct Deepgram {
    server: Server,
    pub shared: Arc<Shared>,
}

impl Deepgram {
    pub async fn start(key: &str) -> Self {
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            connections: AtomicUsize::new(0),
            keepalives: AtomicUsize::new(0),
            finalizes: AtomicUsize::new(0),
            close_streams: AtomicUsize::new(0),
            queries: Mutex::new(Vec::new()),
            finals: Mutex::new(Vec::new()),
            faults: Faults::default(),
            idle_timeout: Mutex::new(Duration::from_secs(10)),
        });
        let router = Router::new()
            .route("/v1/listen", get(listen))
            .route("/v1/projects", get(projects))
            .route("/v1/models", get(models))
            .with_state(Arc::clone(&shared));
        Self {
            server: Server::start(router).await,
            shared,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn count(&self, c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }

    pub fn finals(&self) -> Vec<String> {
        self.shared.finals.lock().unwrap().clone()
    }
}

/// Deepgram's 401 unless `Authorization: Token KEY`.
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Token {}", shared.key).as_str());
    (!ok).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTH",
            "Invalid credentials.",
        )
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "err_code": code, "err_msg": message, "request_id": "00000000-0000-0000-0000-000000000000" })),
    )
        .into_response()
}

async fn projects(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    axum::Json(json!({ "projects": [{ "project_id": "p-1", "name": "Hark tests" }] }))
        .into_response()
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    let stt: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({
                "name": format!("general-{m}"),
                "canonical_name": m,
                "architecture": m,
                "languages": ["en", "en-US"],
                "version": "2025-01-01.0",
                "uuid": "00000000-0000-0000-0000-000000000001",
                "batch": true,
                "streaming": true,
            })
        })
        .collect();
    axum::Json(json!({ "stt": stt, "tts": [] })).into_response()
}

async fn listen(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    let q = |k: &str| query.get(k).map(String::as_str);
    if q("encoding") != Some("mulaw") || q("sample_rate") != Some("8000") {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "encoding=mulaw&sample_rate=8000 expected by this fake",
        );
    }
    if let Some(model) = q("model").filter(|m| !MODELS.contains(m)) {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("No such model/language/tier combination found: {model}"),
        );
    }
    let fault = shared.faults.next();
    match fault {
        Some(Fault::Status(s)) => {
            return error(
                StatusCode::from_u16(s).unwrap(),
                "REFUSED",
                "refused by the test",
            );
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    shared.queries.lock().unwrap().push(query.clone());
    let settings = Settings {
        endpointing_ms: q("endpointing").and_then(|v| v.parse().ok()).unwrap_or(10),
        utterance_end_ms: q("utterance_end_ms").and_then(|v| v.parse().ok()),
        interim: q("interim_results") == Some("true"),
        vad_events: q("vad_events") == Some("true"),
        model: q("model").unwrap_or("base").to_owned(),
    };
    ws.on_upgrade(move |socket| session(socket, shared, settings, fault))
}

struct Settings {
    endpointing_ms: u64,
    utterance_end_ms: Option<u64>,
    interim: bool,
    vad_events: bool,
    model: String,
}

/// The recognizer's state for one socket, in audio time (ms since the start).
#[derive(Default)]
struct Recognizer {
    audio_ms: u64,
    /// Speech not yet in a final result.
    speech_ms: u64,
    /// Where the unfinalized span began.
    span_start_ms: u64,
    in_speech: bool,
    silence_ms: u64,
    last_word_end_ms: u64,
    words_since_utterance_end: bool,
    since_interim_ms: u64,
}

fn results(
    s: &Settings,
    r: &Recognizer,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
) -> Value {
    let text = if r.speech_ms > 0 {
        transcript(r.speech_ms)
    } else {
        String::new()
    };
    let start = r.span_start_ms as f64 / 1000.0;
    let duration = (r.audio_ms - r.span_start_ms) as f64 / 1000.0;
    let n = text.split_whitespace().count().max(1) as f64;
    let words: Vec<Value> = text
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "word": w,
                "start": start + duration * i as f64 / n,
                "end": start + duration * (i + 1) as f64 / n,
                "confidence": 0.98,
                "punctuated_word": w,
            })
        })
        .collect();
    json!({
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration,
        "start": start,
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": { "alternatives": [{ "transcript": text, "confidence": 0.98, "words": words }] },
        "metadata": {
            "request_id": "7e1d9f5c-0000-4000-8000-000000000001",
            "model_info": { "name": format!("general-{}", s.model), "version": "2025-01-01.0", "arch": s.model },
            "model_uuid": "00000000-0000-0000-0000-000000000001",
        },
    })
}

async fn send(ws: &mut WebSocket, v: Value) -> bool {
    ws.send(Message::text(v.to_string())).await.is_ok()
}

async fn session(mut ws: WebSocket, shared: Arc<Shared>, s: Settings, fault: Option<Fault>) {
    let mut r = Recognizer::default();
    let mut samples = [0i16; FRAME];
    loop {
        let idle = *shared.idle_timeout.lock().unwrap();
        let msg = match tokio::time::timeout(idle, ws.recv()).await {
            Err(_) => {
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: 1011,
                        reason: IDLE_REASON.into(),
                    })))
                    .await;
                return;
            }
            Ok(Some(Ok(m))) => m,
            Ok(_) => return,
        };
        match msg {
            Message::Binary(audio) => {
                for frame in audio.chunks(FRAME) {
                    for (out, b) in samples.iter_mut().zip(frame) {
                        *out = hark_actors::ulaw::decode(*b);
                    }
                    let ms = frame.len() as u64 / 8;
                    r.audio_ms += ms;
                    match fault {
                        Some(Fault::DropAfter(limit)) if r.audio_ms >= limit as u64 => return,
                        Some(Fault::Error) if r.audio_ms >= 1000 => {
                            let _ = ws
                                .send(Message::Close(Some(CloseFrame {
                                    code: 1011,
                                    reason: "internal error (injected by the test)".into(),
                                })))
                                .await;
                            return;
                        }
                        _ => {}
                    }
                    if fault == Some(Fault::Stall) {
                        continue;
                    }
                    if is_speech(&samples[..frame.len()]) {
                        if !r.in_speech {
                            r.in_speech = true;
                            if r.speech_ms == 0 {
                                r.span_start_ms = r.audio_ms - ms;
                            }
                            if s.vad_events
                                && !send(&mut ws, json!({ "type": "SpeechStarted", "channel": [0, 1], "timestamp": (r.audio_ms - ms) as f64 / 1000.0 })).await
                            {
                                return;
                            }
                        }
                        r.speech_ms += ms;
                        r.silence_ms = 0;
                        r.last_word_end_ms = r.audio_ms;
                        r.words_since_utterance_end = true;
                    } else {
                        r.silence_ms += ms;
                    }
                    r.since_interim_ms += ms;
                    if r.in_speech && r.silence_ms >= s.endpointing_ms {
                        // Endpointing: the pause closes the utterance.
                        let v = results(&s, &r, true, true, false);
                        shared.finals.lock().unwrap().push(transcript(r.speech_ms));
                        r.speech_ms = 0;
                        r.in_speech = false;
                        r.span_start_ms = r.audio_ms;
                        if !send(&mut ws, v).await {
                            return;
                        }
                    } else if s.interim && r.in_speech && r.since_interim_ms >= 500 {
                        r.since_interim_ms = 0;
                        if !send(&mut ws, results(&s, &r, false, false, false)).await {
                            return;
                        }
                    }
                    if let Some(gap) = s.utterance_end_ms
                        && r.words_since_utterance_end
                        && r.audio_ms - r.last_word_end_ms >= gap
                    {
                        r.words_since_utterance_end = false;
                        let v = json!({ "type": "UtteranceEnd", "channel": [0, 1], "last_word_end": r.last_word_end_ms as f64 / 1000.0 });
                        if !send(&mut ws, v).await {
                            return;
                        }
                    }
                }
            }
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("KeepAlive") => {
                        shared.keepalives.fetch_add(1, Ordering::SeqCst);
                    }
                    Some("Finalize") => {
                        shared.finalizes.fetch_add(1, Ordering::SeqCst);
                        // Answered only when there is unfinalized speech, as documented.
                        if r.speech_ms > 0 && fault != Some(Fault::Stall) {
                            let v = results(&s, &r, true, false, true);
                            shared.finals.lock().unwrap().push(transcript(r.speech_ms));
                            r.speech_ms = 0;
                            r.in_speech = false;
                            r.span_start_ms = r.audio_ms;
                            if !send(&mut ws, v).await {
                                return;
                            }
                        }
                    }
                    Some("CloseStream") => {
                        shared.close_streams.fetch_add(1, Ordering::SeqCst);
                        let meta = json!({
                            "type": "Metadata",
                            "transaction_key": "deprecated",
                            "request_id": "7e1d9f5c-0000-4000-8000-000000000001",
                            "sha256": "0000000000000000000000000000000000000000000000000000000000000000",
                            "created": "2026-11-21T00:00:00.000Z",
                            "duration": r.audio_ms as f64 / 1000.0,
                            "channels": 1,
                            "models": ["00000000-0000-0000-0000-000000000001"],
                            "model_info": {},
                        });
                        let _ = send(&mut ws, meta).await;
                        let _ = ws
                            .send(Message::Close(Some(CloseFrame {
                                code: 1000,
                                reason: "".into(),
                            })))
                            .await;
                        return;
                    }
                    _ => {
                        let _ = ws
                            .send(Message::Close(Some(CloseFrame {
                                code: 1008,
                                reason: "DATA-0000: unknown message".into(),
                            })))
                            .await;
                        return;
                    }
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}
