//! ElevenLabs text-to-speech over its WebSocket stream-input API
//! (`/v1/text-to-speech/{voice_id}/stream-input`), `ulaw_8000` output: the
//! phone's own format, so no resampling, and the lowest first-byte latency.
//!
//! A thin client over tokio-tungstenite rather than `elevenlabs_rs`: that
//! crate (0.7) builds its stream-input URL from a hard-coded
//! `wss://api.elevenlabs.io` in every non-test build, so it cannot be pointed
//! at another endpoint (a proxy, a regional host, or the test suite's fake).
//!
//! One connection per sentence: `{"text":" ", voice_settings}`, the sentence,
//! `{"text":""}`; the server answers `{"audio": base64, ...}` chunks and
//! `{"isFinal": true}`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{AudioStream, TtsProvider};
use crate::providers::{Endpoint, ProviderError, Secret};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenLabsSettings {
    pub voice_id: String,
    /// `eleven_flash_v2_5` has the lowest latency.
    pub model_id: String,
    pub stability: f32,
    pub similarity_boost: f32,
}

impl Default for ElevenLabsSettings {
    fn default() -> Self {
        Self {
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            stability: 0.5,
            similarity_boost: 0.75,
        }
    }
}

impl ElevenLabsSettings {
    /// Problems with these settings: `(field, reason)`, the field relative
    /// to the section the policy holds them in.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.voice_id.trim().is_empty() {
            errors.push(("voice_id", "must not be empty".to_owned()));
        }
        errors
    }
}

pub struct ElevenLabs {
    http: reqwest::Client,
    base: String,
    ws_base: String,
    key: Secret,
    settings: ElevenLabsSettings,
    connect_timeout: Duration,
}

impl ElevenLabs {
    pub fn new(
        endpoint: &Endpoint,
        key: Secret,
        settings: ElevenLabsSettings,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: endpoint.http_base().to_owned(),
            ws_base: endpoint.ws_base(),
            key,
            settings,
            connect_timeout,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/v1/text-to-speech/{}/stream-input?model_id={}&output_format=ulaw_8000",
            self.ws_base, self.settings.voice_id, self.settings.model_id
        )
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> ProviderError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(res) => ProviderError::from_status(res.status().as_u16(), "stream-input"),
        E::ConnectionClosed | E::AlreadyClosed => ProviderError::Closed,
        other => ProviderError::Connect(other.to_string()),
    }
}

/// What one server message means.
#[derive(Debug)]
pub enum Reply {
    Audio(Bytes),
    Final,
    Skip,
}

/// Reads one server message (outside input: never panics).
pub fn parse(text: &str) -> Result<Reply, ProviderError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProviderError::Protocol(format!("bad JSON from ElevenLabs: {e}")))?;
    if let Some(err) = v
        .get("error")
        .or_else(|| v.get("message").filter(|_| v.get("audio").is_none()))
    {
        return Err(ProviderError::Protocol(format!("ElevenLabs: {err}")));
    }
    if let Some(audio) = v
        .get("audio")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let bytes = STANDARD
            .decode(audio)
            .map_err(|e| ProviderError::Protocol(format!("bad base64 audio: {e}")))?;
        return Ok(Reply::Audio(Bytes::from(bytes)));
    }
    if v.get("isFinal").and_then(|f| f.as_bool()) == Some(true) {
        return Ok(Reply::Final);
    }
    Ok(Reply::Skip)
}

#[async_trait]
impl TtsProvider for ElevenLabs {
    fn name(&self) -> &'static str {
        "elevenlabs"
    }

    async fn synthesize(&self, text: &str) -> Result<AudioStream, ProviderError> {
        let mut request = self
            .url()
            .into_client_request()
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let key = HeaderValue::from_str(self.key.expose())
            .map_err(|_| ProviderError::Auth("key is not a valid header".into()))?;
        request.headers_mut().insert("xi-api-key", key);
        let (mut ws, _) = tokio::time::timeout(
            self.connect_timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| ProviderError::Timeout(self.connect_timeout))?
        .map_err(ws_error)?;
        let begin = serde_json::json!({
            "text": " ",
            "voice_settings": {
                "stability": self.settings.stability,
                "similarity_boost": self.settings.similarity_boost,
            },
        });
        let sentence = serde_json::json!({ "text": format!("{text} ") });
        let end = serde_json::json!({ "text": "" });
        for msg in [begin, sentence, end] {
            ws.send(Message::text(msg.to_string()))
                .await
                .map_err(ws_error)?;
        }
        let audio = futures::stream::unfold(Some(ws), |ws| async move {
            let mut ws = ws?;
            loop {
                return match ws.next().await {
                    Some(Ok(Message::Text(t))) => match parse(t.as_str()) {
                        Ok(Reply::Audio(a)) => Some((Ok(a), Some(ws))),
                        Ok(Reply::Final) => None,
                        Ok(Reply::Skip) => continue,
                        Err(e) => Some((Err(e), None)),
                    },
                    Some(Ok(Message::Close(_))) | None => Some((Err(ProviderError::Closed), None)),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Some((Err(ws_error(e)), None)),
                };
            }
        });
        Ok(audio.boxed())
    }

    async fn check(&self) -> Result<String, ProviderError> {
        let res = self
            .http
            .get(format!(
                "{}/v1/voices/{}",
                self.base, self.settings.voice_id
            ))
            .header("xi-api-key", self.key.expose())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        match res.status().as_u16() {
            200 => {
                let v: serde_json::Value = res
                    .json()
                    .await
                    .map_err(|e| ProviderError::Protocol(e.to_string()))?;
                let name = v["name"].as_str().unwrap_or("?");
                Ok(format!(
                    "voice {name} ({}), model {}",
                    self.settings.voice_id, self.settings.model_id
                ))
            }
            s => Err(ProviderError::from_status(
                s,
                &format!("voice {}", self.settings.voice_id),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_messages() {
        let a = r#"{"audio":"//8=","isFinal":null,"normalizedAlignment":null,"alignment":null}"#;
        assert!(matches!(parse(a), Ok(Reply::Audio(b)) if b.as_ref() == [0xFF, 0xFF]));
        assert!(matches!(parse(r#"{"isFinal":true}"#), Ok(Reply::Final)));
        assert!(matches!(
            parse(r#"{"audio":null,"isFinal":true}"#),
            Ok(Reply::Final)
        ));
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"error":"quota_exceeded","message":"no credits"}"#).is_err());
    }
}
