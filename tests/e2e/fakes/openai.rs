//! An OpenAI-compatible API: `POST /v1/chat/completions` streaming SSE
//! (`chat.completion.chunk` objects, tool-call deltas with arguments split
//! across chunks, `data: [DONE]`), `POST /v1/audio/transcriptions`
//! (multipart WAV in, `{"text"}` out), `POST /v1/audio/speech` (raw 24 kHz
//! 16-bit PCM), and `GET /v1/models/{id}`. `Authorization: Bearer KEY`;
//! errors in OpenAI's `{"error": {...}}` shape.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Fault, Faults, Server, is_speech, speech_len, tone, transcript};

pub const MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o-mini-transcribe",
    "whisper-1",
    "gpt-4o-mini-tts",
];

/// What the model answers next.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// A tool call (its arguments streamed in pieces), after optional text.
    Tool {
        text: String,
        name: String,
        arguments: String,
    },
}

pub struct Shared {
    key: String,
    pub chat_faults: Faults,
    pub speech_faults: Faults,
    pub transcription_faults: Faults,
    /// Scripted replies, one per chat request; then the default echo.
    pub replies: Mutex<VecDeque<Reply>>,
    /// Every chat request body, in order.
    pub chat_requests: Mutex<Vec<Value>>,
    /// Every text sent to `/audio/speech`.
    pub spoken: Mutex<Vec<String>>,
    pub transcriptions: AtomicUsize,
}

pub struct OpenAi {
    server: Server,
    pub shared: Arc<Shared>,
}

impl OpenAi {
    pub async fn start(key: &str) -> Self {
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            chat_faults: Faults::default(),
            speech_faults: Faults::default(),
            transcription_faults: Faults::default(),
            replies: Mutex::new(VecDeque::new()),
            chat_requests: Mutex::new(Vec::new()),
            spoken: Mutex::new(Vec::new()),
            transcriptions: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/v1/audio/speech", post(speech))
            .route("/v1/models/{id}", get(model))
            .with_state(Arc::clone(&shared));
        Self {
            server: Server::start(router).await,
            shared,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn reply(&self, r: Reply) {
        self.shared.replies.lock().unwrap().push_back(r);
    }

    pub fn chat_requests(&self) -> Vec<Value> {
        self.shared.chat_requests.lock().unwrap().clone()
    }

    /// The user messages of every chat request, in order, deduplicated.
    pub fn heard(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.chat_requests() {
            for m in r["messages"].as_array().into_iter().flatten() {
                if m["role"] == "user" {
                    let t = m["content"].as_str().unwrap_or_default().to_owned();
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let kind = match status {
        401 | 404 | 400 => "invalid_request_error",
        429 => "requests",
        _ => "server_error",
    };
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
        ),
    )
        .into_response()
}

fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", shared.key).as_str());
    if ok {
        None
    } else {
        Some(error(
            401,
            "invalid_api_key",
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ))
    }
}

/// Applies a fault that happens before the answer starts; `Some` ends the request.
async fn before(fault: &Option<Fault>) -> Option<Response> {
    match fault {
        Some(Fault::Status(429)) => Some(error(
            429,
            "rate_limit_exceeded",
            "Rate limit reached for requests. Please try again in 1s.",
        )),
        Some(Fault::Status(s)) => Some(error(
            *s,
            "server_error",
            "The server had an error while processing your request.",
        )),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(*d).await;
            None
        }
        Some(Fault::Stall) => {
            std::future::pending::<()>().await;
            None
        }
        _ => None,
    }
}

async fn model(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    if MODELS.contains(&id.as_str()) {
        axum::Json(
            json!({ "id": id, "object": "model", "created": 1721172741, "owned_by": "system" }),
        )
        .into_response()
    } else {
        error(
            404,
            "model_not_found",
            &format!("The model `{id}` does not exist or you do not have access to it."),
        )
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let v = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_763_683_200u32,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    });
    format!("data: {v}\n\n")
}

/// Text in pieces of about three words, as a model streams tokens.
fn pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    words.chunks(3).map(|w| w.concat()).collect()
}

fn default_reply(body: &Value) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    if last["role"] == "tool" {
        return Reply::Text("All done.".into());
    }
    let said = last["content"].as_str().unwrap_or("nothing");
    Reply::Text(format!("You said {said}. Is there anything else I can do?"))
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            400,
            "invalid_json",
            "We could not parse the JSON body of your request.",
        );
    };
    if body["model"].as_str().is_none() || !body["messages"].is_array() {
        return error(
            400,
            "missing_required_parameter",
            "model and messages are required",
        );
    }
    shared.chat_requests.lock().unwrap().push(body.clone());
    let fault = shared.chat_faults.next();
    if let Some(r) = before(&fault).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if body["stream"] != true {
        return error(400, "unsupported", "this fake only streams");
    }
    let reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| default_reply(&body));
    let mut events = vec![chunk(
        &model,
        json!({ "role": "assistant", "content": "", "refusal": null }),
        None,
    )];
    let (text, tool) = match reply {
        Reply::Text(t) => (t, None),
        Reply::Tool {
            text,
            name,
            arguments,
        } => (text, Some((name, arguments))),
    };
    for p in pieces(&text) {
        events.push(chunk(&model, json!({ "content": p }), None));
    }
    let finish = match tool {
        Some((name, arguments)) => {
            events.push(chunk(
                &model,
                json!({ "tool_calls": [{ "index": 0, "id": "call_fake_1", "type": "function", "function": { "name": name, "arguments": "" } }] }),
                None,
            ));
            let args: Vec<char> = arguments.chars().collect();
            for part in args.chunks(7) {
                let part: String = part.iter().collect();
                events.push(chunk(
                    &model,
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": part } }] }),
                    None,
                ));
            }
            "tool_calls"
        }
        None => "stop",
    };
    events.push(chunk(&model, json!({}), Some(finish)));
    events.push("data: [DONE]\n\n".into());
    if fault == Some(Fault::Malformed) {
        events.insert(
            1,
            "data: {\"id\": \"chatcmpl-fake\", \"choices\": [\n\n".into(),
        );
    }
    let cut = match fault {
        Some(Fault::DropAfter(n)) => Some(n),
        _ => None,
    };
    let stream =
        futures::stream::iter(events.into_iter().enumerate()).then(move |(i, e)| async move {
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            if cut.is_some_and(|n| i >= n) {
                Err(std::io::Error::other("dropped by the test"))
            } else {
                Ok::<_, std::io::Error>(Bytes::from(e))
            }
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

use futures::StreamExt;

/// The WAV file in a multipart body, as samples.
fn wav_samples(body: &[u8]) -> Option<Vec<i16>> {
    let start = body.windows(4).position(|w| w == b"RIFF")?;
    let wav = &body[start..];
    let data = wav.windows(4).position(|w| w == b"data")?;
    let len = u32::from_le_bytes(wav.get(data + 4..data + 8)?.try_into().ok()?) as usize;
    let pcm = wav.get(data + 8..data + 8 + len)?;
    Some(
        pcm.chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect(),
    )
}

async fn transcribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data; boundary="));
    let text = String::from_utf8_lossy(&body);
    if !multipart || !text.contains("name=\"model\"") || !text.contains("name=\"file\"") {
        return error(
            400,
            "invalid_request",
            "multipart/form-data with file and model expected",
        );
    }
    let Some(samples) = wav_samples(&body) else {
        return error(400, "invalid_file_format", "Invalid file format.");
    };
    if let Some(r) = before(&shared.transcription_faults.next()).await {
        return r;
    }
    shared.transcriptions.fetch_add(1, Ordering::SeqCst);
    let speech_ms = samples.chunks(160).filter(|f| is_speech(f)).count() as u64 * 20;
    let seconds = samples.len() as f64 / 8000.0;
    let input_tokens = (seconds * 10.0) as u64;
    axum::Json(json!({
        "text": transcript(speech_ms),
        "usage": {
            "type": "tokens",
            "input_tokens": input_tokens,
            "input_token_details": { "text_tokens": 0, "audio_tokens": input_tokens },
            "output_tokens": 5,
            "total_tokens": input_tokens + 5,
        },
    }))
    .into_response()
}

async fn speech(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(e) = unauthorized(&shared, &headers) {
        return e;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            400,
            "invalid_json",
            "We could not parse the JSON body of your request.",
        );
    };
    let (Some(input), Some(_), Some(_)) = (
        body["input"].as_str(),
        body["model"].as_str(),
        body["voice"].as_str(),
    ) else {
        return error(
            400,
            "missing_required_parameter",
            "model, input and voice are required",
        );
    };
    if body["response_format"] != "pcm" {
        return error(400, "unsupported", "this fake only speaks pcm");
    }
    if let Some(r) = before(&shared.speech_faults.next()).await {
        return r;
    }
    shared.spoken.lock().unwrap().push(input.to_owned());
    let pcm: Vec<u8> = tone(speech_len(input), 24_000)
        .flat_map(i16::to_le_bytes)
        .collect();
    // 100 ms a chunk, as a streamed response arrives.
    let chunks: Vec<Bytes> = pcm.chunks(4800).map(Bytes::copy_from_slice).collect();
    let stream = futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        Ok::<_, std::io::Error>(c)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
