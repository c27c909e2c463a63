//! ElevenLabs text-to-speech over WebSocket:
//! `GET /v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=ulaw_8000`
//! with the key in `xi-api-key`. The client sends `{"text": " ", voice_settings}`
//! first, then text, and `{"text": ""}` to finish; the server answers
//! `{"audio": base64, "isFinal": null, "normalizedAlignment", "alignment"}`
//! chunks and `{"isFinal": true}`. Also `GET /v1/voices/{voice_id}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

use super::{Fault, Faults, Server, speech_len, tone};

pub const VOICES: &[(&str, &str)] = &[("21m00Tcm4TlvDq8ikWAM", "Rachel")];
pub const MODELS: &[&str] = &[
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_multilingual_v2",
];

pub struct Shared {
    key: String,
    /// Per sentence (one socket each): `Stall` sends nothing, `Error` sends
    /// the in-band error and closes, `Delay(d)` holds the first audio,
    /// `DropAfter(n)` cuts the connection after `n` audio chunks,
    /// `Status(s)` refuses the upgrade.
    pub faults: Faults,
    /// Sentences synthesized (or, under a fault, received).
    pub sentences: Mutex<Vec<String>>,
    /// Sockets closed by the client before `isFinal` (barge-in).
    pub abandoned: AtomicUsize,
    /// The `voice_settings` of the first message, per socket.
    pub settings: Mutex<Vec<Value>>,
}

pub struct ElevenLabs {
    server: Server,
    pub shared: Arc<Shared>,
}

impl ElevenLabs {
    pub async fn start(key: &str) -> Self {
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            faults: Faults::default(),
            sentences: Mutex::new(Vec::new()),
            abandoned: AtomicUsize::new(0),
            settings: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route(
                "/v1/text-to-speech/{voice_id}/stream-input",
                get(stream_input),
            )
            .route("/v1/voices/{voice_id}", get(voice))
            .with_state(Arc::clone(&shared));
        Self {
            server: Server::start(router).await,
            shared,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn sentences(&self) -> Vec<String> {
        self.shared.sentences.lock().unwrap().clone()
    }
}

fn detail(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "detail": { "status": code, "message": message } })),
    )
        .into_response()
}

fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if headers.get("xi-api-key").and_then(|v| v.to_str().ok()) == Some(shared.key.as_str()) {
        None
    } else {
        Some(detail(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        ))
    }
}

async fn voice(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(voice_id): Path<String>,
) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    match VOICES.iter().find(|(id, _)| *id == voice_id) {
        Some((id, name)) => axum::Json(json!({
            "voice_id": id,
            "name": name,
            "category": "premade",
            "labels": { "accent": "american" },
        }))
        .into_response(),
        None => detail(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            &format!("A voice with the voice_id {voice_id} was not found."),
        ),
    }
}

async fn stream_input(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    if !VOICES.iter().any(|(id, _)| *id == voice_id) {
        return detail(StatusCode::NOT_FOUND, "voice_not_found", "voice not found");
    }
    if query.get("output_format").map(String::as_str) != Some("ulaw_8000") {
        return detail(
            StatusCode::BAD_REQUEST,
            "invalid_output_format",
            "this fake speaks ulaw_8000 only",
        );
    }
    if !query
        .get("model_id")
        .is_some_and(|m| MODELS.contains(&m.as_str()))
    {
        return detail(
            StatusCode::BAD_REQUEST,
            "model_not_found",
            "model not found",
        );
    }
    let fault = shared.faults.next();
    if let Some(Fault::Status(s)) = fault {
        return detail(
            StatusCode::from_u16(s).unwrap(),
            "refused",
            "refused by the test",
        );
    }
    ws.on_upgrade(move |socket| session(socket, shared, fault))
}

fn alignment(text: &str) -> Value {
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let starts: Vec<u64> = (0..chars.len() as u64).map(|i| i * 40).collect();
    json!({ "chars": chars, "charStartTimesMs": starts, "charsDurationsMs": vec![40; chars.len()] })
}

async fn session(mut ws: WebSocket, shared: Arc<Shared>, fault: Option<Fault>) {
    let mut text = String::new();
    let mut first = true;
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(20), ws.recv()).await {
            Ok(Some(Ok(m))) => m,
            _ => return, // ElevenLabs closes idle sockets after 20 s
        };
        let Message::Text(t) = msg else {
            if matches!(msg, Message::Close(_)) {
                shared.abandoned.fetch_add(1, Ordering::SeqCst);
                return;
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            let _ = ws
                .send(Message::Close(Some(CloseFrame {
                    code: 1008,
                    reason: "invalid JSON".into(),
                })))
                .await;
            return;
        };
        let Some(chunk) = v["text"].as_str() else {
            continue;
        };
        if first {
            // The documented first message: a single space, with settings.
            first = false;
            if chunk != " " {
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: "first message must be {\"text\": \" \"}".into(),
                    })))
                    .await;
                return;
            }
            shared
                .settings
                .lock()
                .unwrap()
                .push(v["voice_settings"].clone());
            continue;
        }
        if !chunk.is_empty() {
            text.push_str(chunk);
            continue;
        }
        // End of input: speak it.
        shared
            .sentences
            .lock()
            .unwrap()
            .push(text.trim().to_owned());
        match fault {
            Some(Fault::Stall) => {
                // Keep the socket open and silent until the client gives up.
                while let Some(Ok(m)) = ws.recv().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
                return;
            }
            Some(Fault::Error) => {
                let _ = ws
                    .send(Message::text(
                        json!({ "message": "This request exceeds your quota.", "error": "quota_exceeded", "code": 1008 }).to_string(),
                    ))
                    .await;
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: "quota_exceeded".into(),
                    })))
                    .await;
                return;
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        let ulaw: Vec<u8> = tone(speech_len(&text), 8000)
            .map(hark_actors::ulaw::encode)
            .collect();
        // 250 ms a message.
        for (i, piece) in ulaw.chunks(2000).enumerate() {
            if fault == Some(Fault::DropAfter(i)) {
                return;
            }
            let audio = base64::engine::general_purpose::STANDARD.encode(piece);
            let m = json!({
                "audio": audio,
                "isFinal": null,
                "normalizedAlignment": if i == 0 { alignment(&text) } else { Value::Null },
                "alignment": if i == 0 { alignment(&text) } else { Value::Null },
            });
            if ws.send(Message::text(m.to_string())).await.is_err() {
                shared.abandoned.fetch_add(1, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = ws
            .send(Message::text(json!({ "isFinal": true }).to_string()))
            .await;
        let _ = ws
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
        return;
    }
}
