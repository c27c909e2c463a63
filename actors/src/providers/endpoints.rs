//! Where the providers are and how Hark authenticates: the `[providers]`
//! section of the runtime config. API keys come from environment variables
//! named here and are held as [`Secret`]s, which never print their value.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `https://` (or `http://` for a local server); WebSocket URLs are derived.
    pub base_url: String,
    /// The environment variable holding the API key.
    pub api_key_env: String,
}

impl Endpoint {
    fn new(base_url: &str, api_key_env: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            api_key_env: api_key_env.to_owned(),
        }
    }

    /// The base URL with `http(s)` turned into `ws(s)`.
    pub fn ws_base(&self) -> String {
        let b = self.base_url.trim_end_matches('/');
        if let Some(rest) = b.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = b.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            b.to_owned()
        }
    }

    pub fn http_base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderEndpoints {
    pub deepgram: Endpoint,
    /// OpenAI: chat, transcription and speech.
    pub openai: Endpoint,
    pub elevenlabs: Endpoint,
    /// Twilio's REST API (`hark doctor` checks the account; the key is
    /// `TWILIO_AUTH_TOKEN`, with `TWILIO_ACCOUNT_SID`).
    pub twilio: Endpoint,
    /// Other OpenAI-compatible chat endpoints by name (Azure, Groq, vLLM,
    /// Together...), usable in a policy's `providers.llm`.
    pub openai_compatible: BTreeMap<String, Endpoint>,
    /// TCP/TLS/WebSocket connect timeout for every provider.
    pub connect_timeout_ms: u64,
    /// How often `hark serve` re-checks every provider for `/readyz`.
    pub health_check_secs: u64,
}

impl Default for ProviderEndpoints {
    fn default() -> Self {
        Self {
            deepgram: Endpoint::new("https://api.deepgram.com", "DEEPGRAM_API_KEY"),
            openai: Endpoint::new("https://api.openai.com/v1", "OPENAI_API_KEY"),
            elevenlabs: Endpoint::new("https://api.elevenlabs.io", "ELEVENLABS_API_KEY"),
            twilio: Endpoint::new("https://api.twilio.com", "TWILIO_AUTH_TOKEN"),
            openai_compatible: BTreeMap::new(),
            connect_timeout_ms: 3000,
            health_check_secs: 60,
        }
    }
}

impl ProviderEndpoints {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn health_check_interval(&self) -> Duration {
        Duration::from_secs(self.health_check_secs.max(1))
    }

    /// The endpoint of an LLM provider name from a policy.
    pub fn llm(&self, name: &str) -> Option<&Endpoint> {
        match name {
            "openai" => Some(&self.openai),
            other => self.openai_compatible.get(other),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let all = [
            ("providers.deepgram", &self.deepgram),
            ("providers.openai", &self.openai),
            ("providers.elevenlabs", &self.elevenlabs),
            ("providers.twilio", &self.twilio),
        ];
        let named = self.openai_compatible.iter().map(|(n, e)| (n.as_str(), e));
        for (name, e) in all.into_iter().chain(named) {
            if !(e.base_url.starts_with("https://") || e.base_url.starts_with("http://")) {
                errors.push(format!(
                    "{name}.base_url: {:?} is not an http(s) URL",
                    e.base_url
                ));
            }
            if e.api_key_env.trim().is_empty() {
                errors.push(format!(
                    "{name}.api_key_env: must name an environment variable"
                ));
            }
        }
        for name in self.openai_compatible.keys() {
            if ["sim", "openai"].contains(&name.as_str()) {
                errors.push(format!(
                    "providers.openai_compatible.{name}: the name is reserved"
                ));
            }
        }
        errors
    }
}

/// A credential. Printing it shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for building a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// API keys found in the environment, by environment variable name.
#[derive(Debug, Clone, Default)]
pub struct Keys(BTreeMap<String, Secret>);

impl Keys {
    /// Reads every key the endpoints name from `lookup` (the process
    /// environment in production). Empty values count as unset.
    pub fn from_lookup(
        endpoints: &ProviderEndpoints,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let names = [
            &endpoints.deepgram,
            &endpoints.openai,
            &endpoints.elevenlabs,
            &endpoints.twilio,
        ]
        .into_iter()
        .chain(endpoints.openai_compatible.values())
        .map(|e| e.api_key_env.clone());
        Self(
            names
                .filter_map(|n| {
                    let v = lookup(&n).filter(|v| !v.trim().is_empty())?;
                    Some((n, Secret::new(v)))
                })
                .collect(),
        )
    }

    pub fn from_env(endpoints: &ProviderEndpoints) -> Self {
        Self::from_lookup(endpoints, |n| std::env::var(n).ok())
    }

    pub fn get(&self, endpoint: &Endpoint) -> Option<&Secret> {
        self.0.get(&endpoint.api_key_env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let keys = Keys::from_lookup(&ProviderEndpoints::default(), |n| {
            (n == "OPENAI_API_KEY").then(|| "sk-very-secret".to_owned())
        });
        assert!(!format!("{keys:?}").contains("very-secret"));
        assert_eq!(
            keys.get(&ProviderEndpoints::default().openai)
                .map(Secret::expose),
            Some("sk-very-secret")
        );
    }

    #[test]
    fn websocket_urls_follow_the_scheme() {
        assert_eq!(
            Endpoint::new("https://api.x.com/", "K").ws_base(),
            "wss://api.x.com"
        );
        assert_eq!(
            Endpoint::new("http://127.0.0.1:9/", "K").ws_base(),
            "ws://127.0.0.1:9"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = ProviderEndpoints::default();
        e.deepgram.base_url = "ftp://x".into();
        e.openai_compatible
            .insert("sim".into(), Endpoint::new("http://x", "K"));
        let errors = e.validate().join("\n");
        assert!(errors.contains("providers.deepgram.base_url"), "{errors}");
        assert!(errors.contains("reserved"), "{errors}");
    }
}
