//! Which implementations serve a policy's calls, decided once when the
//! policy is loaded: a name → builder table per role. A provider named by
//! the policy is live when its API key is set, and replaced by its
//! simulation otherwise — said loudly, so a missing key is never mistaken
//! for a working deployment.
//!
//! Adding a provider is one row here (beside its file in the role's folder
//! and its settings in the schema); a test holds these names and the
//! schema's lists together.

use std::sync::Arc;
use std::time::Duration;

use super::endpoints::{Endpoint, Keys, ProviderEndpoints, Secret};
use super::{BatchStt, LlmProvider, ProviderError, SttProvider, TtsProvider, llm, stt, tts};
use crate::policy::PolicyFile;

/// What a builder is given.
pub struct Ctx<'a> {
    pub policy: &'a PolicyFile,
    pub endpoints: &'a ProviderEndpoints,
    pub keys: &'a Keys,
    pub connect_timeout: Duration,
}

/// A builder's answer.
pub enum Built<T> {
    Live(T),
    /// The provider's API key is not set: this environment variable.
    MissingKey(String),
}

impl Ctx<'_> {
    /// `make(key)` if `endpoint`'s key is set.
    fn keyed<T>(
        &self,
        endpoint: &Endpoint,
        make: impl FnOnce(Secret) -> Result<T, String>,
    ) -> Result<Built<T>, String> {
        match self.keys.get(endpoint) {
            Some(key) => make(key.clone()).map(Built::Live),
            None => Ok(Built::MissingKey(endpoint.api_key_env.clone())),
        }
    }
}

type Builder<T> = fn(&Ctx<'_>) -> Result<Built<T>, String>;

/// Streaming transcription, one session per call.
pub const STREAMING_STT: &[(&str, Builder<Arc<dyn SttProvider>>)] = &[
    ("sim", |c| {
        Ok(Built::Live(Arc::new(stt::sim::SimStt::new(
            c.policy.sim.stt.clone(),
        ))))
    }),
    ("deepgram", |c| {
        c.keyed(&c.endpoints.deepgram, |key| {
            let p = stt::deepgram::Deepgram::new(
                &c.endpoints.deepgram,
                key,
                c.policy.stt.deepgram.clone(),
                c.connect_timeout,
            )?;
            Ok(Arc::new(p) as Arc<dyn SttProvider>)
        })
    }),
];

/// Per-utterance transcription while the stream is down.
pub const BATCH_STT: &[(&str, Builder<Arc<dyn BatchStt>>)] = &[("openai", |c| {
    c.keyed(&c.endpoints.openai, |key| {
        let p = stt::openai::OpenAiStt::new(&c.endpoints.openai, key, c.policy.stt.openai.clone());
        Ok(Arc::new(p) as Arc<dyn BatchStt>)
    })
})];

/// Speech synthesis, tried in order for each sentence.
pub const TTS: &[(&str, Builder<Arc<dyn TtsProvider>>)] = &[
    ("sim", |c| {
        Ok(Built::Live(Arc::new(tts::sim::SimTts::new(
            c.policy.sim.tts.clone(),
        ))))
    }),
    ("elevenlabs", |c| {
        c.keyed(&c.endpoints.elevenlabs, |key| {
            let p = tts::elevenlabs::ElevenLabs::new(
                &c.endpoints.elevenlabs,
                key,
                c.policy.tts.elevenlabs.clone(),
                c.connect_timeout,
            );
            Ok(Arc::new(p) as Arc<dyn TtsProvider>)
        })
    }),
    ("openai", |c| {
        c.keyed(&c.endpoints.openai, |key| {
            let p =
                tts::openai::OpenAiTts::new(&c.endpoints.openai, key, c.policy.tts.openai.clone());
            Ok(Arc::new(p) as Arc<dyn TtsProvider>)
        })
    }),
];

/// LLMs: `sim`, or any OpenAI-compatible endpoint by its name (`openai`, or
/// one of the runtime config's `[providers.openai_compatible.NAME]`) with
/// the policy's `[llm.NAME]` model settings.
fn build_llm(c: &Ctx<'_>, name: &str) -> Result<Built<Arc<dyn LlmProvider>>, String> {
    if name == "sim" {
        return Ok(Built::Live(Arc::new(llm::sim::SimLlm::new(
            c.policy.sim.llm.clone(),
        ))));
    }
    let Some(endpoint) = c.endpoints.llm(name) else {
        return Err(format!(
            "providers.llm: {name:?} is neither \"openai\" nor an endpoint in the runtime config's [providers.openai_compatible]"
        ));
    };
    let Some(settings) = c.policy.llm.get(name) else {
        return Err(format!(
            "providers.llm: {name:?} has no [llm.{name}] section"
        ));
    };
    c.keyed(endpoint, |key| {
        let p = llm::openai::OpenAiChat::new(name, endpoint, key, settings.clone());
        Ok(Arc::new(p) as Arc<dyn LlmProvider>)
    })
}

/// The builder called `name` in `table`.
fn find<T>(table: &[(&str, Builder<T>)], name: &str) -> Option<Builder<T>> {
    table.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
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
        let c = Ctx {
            policy,
            endpoints,
            keys,
            connect_timeout: endpoints.connect_timeout(),
        };
        let mut notices = Vec::new();
        let mut missing = |role: &'static str, name: &str, env: String| {
            notices.push(Notice {
                role,
                provider: name.to_owned(),
                missing_key: env,
            });
        };
        let simulated = Self::simulated(policy);
        let mut stt_names = policy.providers.stt.iter().map(String::as_str);
        let stt = match stt_names.next() {
            Some(name) => match find(STREAMING_STT, name) {
                Some(build) => match build(&c)? {
                    Built::Live(p) => p,
                    Built::MissingKey(env) => {
                        missing("stt", name, env);
                        Arc::clone(&simulated.stt)
                    }
                },
                None => return Err(format!("providers.stt: {name:?} is not a streaming STT")),
            },
            None => Arc::clone(&simulated.stt),
        };
        let stt_fallback = match stt_names.next() {
            Some(name) => match find(BATCH_STT, name) {
                Some(build) => match build(&c)? {
                    Built::Live(p) => Some(p),
                    Built::MissingKey(env) => {
                        missing("stt", name, env);
                        None
                    }
                },
                None => return Err(format!("providers.stt: {name:?} cannot be the fallback")),
            },
            None => None,
        };
        let mut llm = Vec::new();
        for name in &policy.providers.llm {
            match build_llm(&c, name)? {
                Built::Live(p) => llm.push(p),
                Built::MissingKey(env) => missing("llm", name, env),
            }
        }
        if llm.is_empty() {
            llm = simulated.llm.clone();
        }
        let mut tts = Vec::new();
        for name in &policy.providers.tts {
            let Some(build) = find(TTS, name) else {
                return Err(format!("providers.tts: {name:?} is not a TTS"));
            };
            match build(&c)? {
                Built::Live(p) => tts.push(p),
                Built::MissingKey(env) => missing("tts", name, env),
            }
        }
        if tts.is_empty() {
            tts = simulated.tts.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T>(table: &[(&'static str, Builder<T>)]) -> Vec<&'static str> {
        table.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn the_schema_names_exactly_the_providers_this_table_builds() {
        assert_eq!(names(STREAMING_STT), crate::policy::STREAMING_STT);
        assert_eq!(names(BATCH_STT), crate::policy::BATCH_STT);
        assert_eq!(names(TTS), crate::policy::TTS);
    }

    #[test]
    fn a_provider_without_its_key_is_simulated_and_said() {
        let mut policy = PolicyFile::default();
        policy.providers.stt = vec!["deepgram".into(), "openai".into()];
        policy.providers.tts = vec!["elevenlabs".into()];
        let endpoints = ProviderEndpoints::default();
        let keys = Keys::from_lookup(&endpoints, |_| None);
        let (p, notices) = Providers::build(&policy, &endpoints, &keys).unwrap();
        assert!(p.stt.is_simulated());
        assert!(p.stt_fallback.is_none());
        let said: Vec<_> = notices.iter().map(|n| n.provider.as_str()).collect();
        assert_eq!(said, ["deepgram", "openai", "openai", "elevenlabs"]);
    }

    #[test]
    fn a_provider_with_its_key_is_built() {
        let mut policy = PolicyFile::default();
        policy.providers.stt = vec!["deepgram".into()];
        policy.providers.tts = vec!["elevenlabs".into(), "openai".into()];
        let endpoints = ProviderEndpoints::default();
        let keys = Keys::from_lookup(&endpoints, |_| Some("k".into()));
        let (p, notices) = Providers::build(&policy, &endpoints, &keys).unwrap();
        assert!(notices.is_empty(), "{notices:?}");
        let built: Vec<_> = p.describe().into_iter().map(|(_, n, _)| n).collect();
        assert_eq!(built, ["deepgram", "openai", "elevenlabs", "openai"]);
    }
}
