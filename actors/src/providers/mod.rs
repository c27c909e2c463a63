//! Speech and language providers behind small traits, one file per provider.
//!
//! The actors only see the traits. Which implementations serve a policy's
//! calls is decided once, when the policy is loaded ([`Providers::build`]):
//! a provider named by the policy is live when its API key is set, and
//! replaced by its simulation otherwise — said loudly, so a missing key is
//! never mistaken for a working deployment.

use std::sync::Arc;
use std::time::Duration;

pub mod endpoints;
pub mod llm;
pub mod stt;
pub mod tts;

pub use endpoints::{Endpoint, Keys, ProviderEndpoints, Secret};
pub use llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream, ToolCall, ToolSpec};
pub use stt::{BatchStt, SpeechInfo, SttEvent, SttInput, SttProvider, SttSession};
pub use tts::{AudioStream, TtsProvider};

use crate::policy::PolicyFile;

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

/// The providers serving one policy's calls.
#[derive(Clone)]
pub struct Providers {
    /// Streaming transcription, one session per call.
    pub stt: Arc<dyn SttProvider>,
    /// Per-utterance transcription while the stream is down.
    pub stt_fallback: Option<Arc<dyn BatchStt>>,
    /// In order: the first is tried (and retried once), then the others.
    pub llm: Vec<Arc<dyn LlmProvider>>,
    /// In order, per sentence.
    pub tts: Vec<Arc<dyn TtsProvider>>,
    /// `stt+llm+tts` of the first providers: the `provider` label of the
    /// end-to-end `hark_turn_response_seconds`.
    pub pipeline: Arc<str>,
}

/// A provider a policy names that cannot be used: its API key is not set.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub role: &'static str,
    pub provider: String,
    /// The environment variable that is not set.
    pub missing_key: String,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} is not set",
            self.role, self.provider, self.missing_key
        )
    }
}

impl Providers {
    /// Everything simulated, as the policy's `[sim]` section says.
    pub fn simulated(policy: &PolicyFile) -> Self {
        let sim = &policy.sim;
        Self::assemble(
            Arc::new(stt::sim::SimStt::new(sim.stt.clone())),
            None,
            vec![Arc::new(llm::sim::SimLlm::new(sim.llm.clone()))],
            vec![Arc::new(tts::sim::SimTts::new(sim.tts.clone()))],
        )
    }

    fn assemble(
        stt: Arc<dyn SttProvider>,
        stt_fallback: Option<Arc<dyn BatchStt>>,
        llm: Vec<Arc<dyn LlmProvider>>,
        tts: Vec<Arc<dyn TtsProvider>>,
    ) -> Self {
        let first = |v: Option<&'static str>| v.unwrap_or("none");
        let pipeline = format!(
            "{}+{}+{}",
            stt.name(),
            first(llm.first().map(|p| p.name())),
            first(tts.first().map(|p| p.name()))
        );
        Self {
            stt,
            stt_fallback,
            llm,
            tts,
            pipeline: pipeline.into(),
        }
    }

    /// The providers a policy names, live where a key is set. Returns what was
    /// substituted or dropped, for the start-up banner and logs.
    pub fn build(
        policy: &PolicyFile,
        endpoints: &ProviderEndpoints,
        keys: &Keys,
    ) -> Result<(Self, Vec<Notice>), String> {
        let mut notices = Vec::new();
        let sim = &policy.sim;
        let timeout = endpoints.connect_timeout();
        let missing = |role: &'static str, name: &str, e: &Endpoint, notices: &mut Vec<Notice>| {
            notices.push(Notice {
                role,
                provider: name.to_owned(),
                missing_key: e.api_key_env.clone(),
            });
        };
        let mut stt_names = policy.providers.stt.iter();
        let stt: Arc<dyn SttProvider> = match stt_names.next().map(String::as_str) {
            Some("deepgram") => match keys.get(&endpoints.deepgram) {
                Some(key) => Arc::new(stt::deepgram::Deepgram::new(
                    &endpoints.deepgram,
                    key.clone(),
                    policy.stt.deepgram.clone(),
                    timeout,
                )?),
                None => {
                    missing("stt", "deepgram", &endpoints.deepgram, &mut notices);
                    Arc::new(stt::sim::SimStt::new(sim.stt.clone()))
                }
            },
            _ => Arc::new(stt::sim::SimStt::new(sim.stt.clone())),
        };
        let stt_fallback: Option<Arc<dyn BatchStt>> = match stt_names.next().map(String::as_str) {
            Some("openai") => match keys.get(&endpoints.openai) {
                Some(key) => Some(Arc::new(stt::openai::OpenAiStt::new(
                    &endpoints.openai,
                    key.clone(),
                    policy.stt.openai.clone(),
                ))),
                None => {
                    missing("stt", "openai", &endpoints.openai, &mut notices);
                    None
                }
            },
            _ => None,
        };
        let mut llm: Vec<Arc<dyn LlmProvider>> = Vec::new();
        for name in &policy.providers.llm {
            if name == "sim" {
                llm.push(Arc::new(llm::sim::SimLlm::new(sim.llm.clone())));
                continue;
            }
            let Some(endpoint) = endpoints.llm(name) else {
                return Err(format!(
                    "providers.llm: {name:?} is neither \"openai\" nor an endpoint in the runtime config's [providers.openai_compatible]"
                ));
            };
            let Some(settings) = policy.llm.get(name) else {
                return Err(format!(
                    "providers.llm: {name:?} has no [llm.{name}] section"
                ));
            };
            match keys.get(endpoint) {
                Some(key) => llm.push(Arc::new(llm::openai::OpenAiChat::new(
                    name,
                    endpoint,
                    key.clone(),
                    settings.clone(),
                ))),
                None => missing("llm", name, endpoint, &mut notices),
            }
        }
        if llm.is_empty() {
            llm.push(Arc::new(llm::sim::SimLlm::new(sim.llm.clone())));
        }
        let mut tts: Vec<Arc<dyn TtsProvider>> = Vec::new();
        for name in &policy.providers.tts {
            match name.as_str() {
                "elevenlabs" => match keys.get(&endpoints.elevenlabs) {
                    Some(key) => tts.push(Arc::new(tts::elevenlabs::ElevenLabs::new(
                        &endpoints.elevenlabs,
                        key.clone(),
                        policy.tts.elevenlabs.clone(),
                        timeout,
                    ))),
                    None => missing("tts", "elevenlabs", &endpoints.elevenlabs, &mut notices),
                },
                "openai" => match keys.get(&endpoints.openai) {
                    Some(key) => tts.push(Arc::new(tts::openai::OpenAiTts::new(
                        &endpoints.openai,
                        key.clone(),
                        policy.tts.openai.clone(),
                    ))),
                    None => missing("tts", "openai", &endpoints.openai, &mut notices),
                },
                _ => tts.push(Arc::new(tts::sim::SimTts::new(sim.tts.clone()))),
            }
        }
        if tts.is_empty() {
            tts.push(Arc::new(tts::sim::SimTts::new(sim.tts.clone())));
        }
        Ok((Self::assemble(stt, stt_fallback, llm, tts), notices))
    }

    /// `(role, provider, simulated?)` for banners, `/readyz` and `hark doctor`.
    pub fn describe(&self) -> Vec<(&'static str, &'static str, bool)> {
        let mut out = vec![("stt", self.stt.name(), self.stt.is_simulated())];
        if let Some(f) = &self.stt_fallback {
            out.push(("stt", f.name(), false));
        }
        out.extend(self.llm.iter().map(|p| ("llm", p.name(), p.is_simulated())));
        out.extend(self.tts.iter().map(|p| ("tts", p.name(), p.is_simulated())));
        out
    }

    /// Checks every provider at once (reachability, credentials, model or
    /// voice), each within `limit`; `(role, provider, result)` in
    /// [`describe`](Self::describe) order.
    pub async fn check(
        &self,
        limit: Duration,
    ) -> Vec<(&'static str, &'static str, Result<String, ProviderError>)> {
        use futures::FutureExt;
        use futures::future::BoxFuture;
        let mut checks: Vec<(&'static str, &'static str, BoxFuture<'_, _>)> =
            vec![("stt", self.stt.name(), self.stt.check().boxed())];
        if let Some(f) = &self.stt_fallback {
            checks.push(("stt", f.name(), f.check().boxed()));
        }
        checks.extend(
            self.llm
                .iter()
                .map(|p| ("llm", p.name(), p.check().boxed())),
        );
        checks.extend(
            self.tts
                .iter()
                .map(|p| ("tts", p.name(), p.check().boxed())),
        );
        futures::future::join_all(checks.into_iter().map(|(role, name, check)| async move {
            let result = tokio::time::timeout(limit, check)
                .await
                .unwrap_or(Err(ProviderError::Timeout(limit)));
            (role, name, result)
        }))
        .await
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
