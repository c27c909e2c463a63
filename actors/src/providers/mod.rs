//! Speech and language providers behind small traits, one file per vendor
//! holding its settings (with `validate`), its client and its `check()`.
//!
//! The actors only see the traits. Which implementations serve a policy's
//! calls is decided once, when the policy is loaded, from the name →
//! builder tables in [`build`].
//!
//! # Layout
//! - [`stt`], [`llm`], [`tts`] — each role's trait and its vendors.
//! - [`build`] — the name → builder tables, [`Providers`], [`Notice`].
//! - [`endpoints`] — base URLs and API key variables (runtime config), keys.

use std::time::Duration;

pub mod build;
pub mod endpoints;
pub mod llm;
pub mod stt;
pub mod tts;

pub use build::{Notice, Providers};
pub use endpoints::{Endpoint, Keys, ProviderEndpoints, Secret};
pub use llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream, ToolCall, ToolSpec};
pub use stt::{BatchStt, SpeechInfo, SttEvent, SttInput, SttProvider, SttSession};
pub use tts::{AudioStream, TtsProvider};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("stream closed unexpectedly")]
    Closed,
}

impl ProviderError {
    /// The `kind` label of `hark_provider_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Connect(_) => "connect",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::RateLimited => "rate_limited",
            ProviderError::Auth(_) => "auth",
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Status(s) if *s >= 500 => "server_error",
            ProviderError::Status(_) => "status",
            ProviderError::Protocol(_) => "protocol",
            ProviderError::Closed => "closed",
        }
    }

    /// Whether trying again (or elsewhere) may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Connect(_)
            | ProviderError::Timeout(_)
            | ProviderError::RateLimited
            | ProviderError::Protocol(_)
            | ProviderError::Closed => true,
            ProviderError::Status(s) => *s >= 500,
            ProviderError::Auth(_) | ProviderError::NotFound(_) => false,
        }
    }

    /// Maps an HTTP status to an error.
    pub fn from_status(status: u16, what: &str) -> Self {
        match status {
            401 | 403 => ProviderError::Auth(format!("HTTP {status}")),
            404 => ProviderError::NotFound(what.to_owned()),
            429 => ProviderError::RateLimited,
            s => ProviderError::Status(s),
        }
    }

    /// Counts the error in `hark_provider_errors_total{provider,kind}`.
    pub fn count(&self, provider: &'static str) {
        metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => provider, "kind" => self.kind())
            .increment(1);
    }
}

impl From<reqwest::Error> for ProviderError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            ProviderError::Timeout(Duration::ZERO)
        } else if let Some(status) = e.status() {
            ProviderError::from_status(status.as_u16(), "")
        } else if e.is_connect() {
            ProviderError::Connect(e.to_string())
        } else if e.is_decode() || e.is_body() {
            ProviderError::Protocol(e.to_string())
        } else {
            ProviderError::Connect(e.to_string())
        }
    }
}

/// An async-openai client without its built-in retries (up to three, with
/// backoff of up to 8 s, on 429 and 5xx): Hark retries once within the turn's
/// budget and then moves to the policy's fallback, and counts every failure.
pub fn no_retries(
    config: async_openai::config::OpenAIConfig,
    http: &reqwest::Client,
) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    async_openai::Client::with_config(config)
        .with_http_service(async_openai::middleware::ReqwestService::new(http.clone()))
}

/// Whether an OpenAI-compatible endpoint has `model` (`GET {base}/models/{model}`):
/// reachability, the key and the model in one request.
pub async fn check_openai_model(
    http: &reqwest::Client,
    base: &str,
    key: &Secret,
    model: &str,
) -> Result<(), ProviderError> {
    let res = http
        .get(format!("{base}/models/{model}"))
        .bearer_auth(key.expose())
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    match res.status().as_u16() {
        200 => Ok(()),
        s => Err(ProviderError::from_status(s, &format!("model {model}"))),
    }
}

/// An async-openai error as a provider error (status, transport, JSON).
pub fn openai_error(e: async_openai::error::OpenAIError) -> ProviderError {
    use async_openai::error::OpenAIError;
    match e {
        OpenAIError::ApiError(api) => {
            ProviderError::from_status(api.status_code.as_u16(), &api.api_error.message)
        }
        OpenAIError::Reqwest(e) => e.into(),
        OpenAIError::JSONDeserialize(e, _) => ProviderError::Protocol(format!("bad JSON: {e}")),
        OpenAIError::StreamError(e) => ProviderError::Protocol(e.to_string()),
        other => ProviderError::Protocol(other.to_string()),
    }
}

/// A provider name as a `'static` label value. Names come from policy and
/// config files, so the set is small and fixed; each is stored once.
pub fn intern(name: &str) -> &'static str {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, PoisonError};
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
