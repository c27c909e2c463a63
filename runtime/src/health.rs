//! Provider health: checked at start-up and then periodically, in the
//! background, so a provider that is down never stops `hark serve` — it shows
//! in `/readyz`, in the logs, and in `hark_provider_up`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hark_actors::Providers;
use hark_actors::metrics as m;
use serde::Serialize;

/// The last known state of one provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Not checked yet: counted as usable so start-up is not held back.
    Unknown,
    Healthy {
        detail: String,
    },
    Unhealthy {
        kind: &'static str,
        detail: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub role: &'static str,
    pub provider: &'static str,
    pub simulated: bool,
    #[serde(flatten)]
    pub state: State,
}

impl Entry {
    fn usable(&self) -> bool {
        !matches!(self.state, State::Unhealthy { .. })
    }
}

pub struct ProviderHealth {
    entries: Mutex<Vec<Entry>>,
    /// The providers the checks run on: replaced by a policy reload.
    providers: Mutex<Providers>,
    /// Wakes the checker at once (after a reload).
    now: tokio::sync::Notify,
}

impl ProviderHealth {
    pub fn new(providers: &Providers) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(Self::unknown(providers)),
            providers: Mutex::new(providers.clone()),
            now: tokio::sync::Notify::new(),
        })
    }

    fn unknown(providers: &Providers) -> Vec<Entry> {
        providers
            .describe()
            .into_iter()
            .map(|(role, provider, simulated)| Entry {
                role,
                provider,
                simulated,
                state: State::Unknown,
            })
            .collect()
    }

    /// A policy reload brought other providers: check those from now on
    /// (at once), and forget the old ones' states.
    pub fn replace(&self, providers: &Providers) {
        *self.entries.lock().unwrap_or_else(PoisonError::into_inner) = Self::unknown(providers);
        *self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = providers.clone();
        self.now.notify_one();
    }

    pub fn snapshot(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What anyone may see (`/readyz` has no token): each provider's state
    /// and, when unhealthy, the kind of fault — never the error text, which
    /// names internal hosts and URLs. The details are in `/api/v1/node`.
    pub fn public_snapshot(&self) -> Vec<serde_json::Value> {
        self.snapshot()
            .into_iter()
            .map(|e| {
                let (state, kind) = match e.state {
                    State::Unknown => ("unknown", None),
                    State::Healthy { .. } => ("healthy", None),
                    State::Unhealthy { kind, .. } => ("unhealthy", Some(kind)),
                };
                let mut v = serde_json::json!({
                    "role": e.role,
                    "provider": e.provider,
                    "simulated": e.simulated,
                    "state": state,
                });
                if let (Some(kind), Some(obj)) = (kind, v.as_object_mut()) {
                    obj.insert("kind".into(), kind.into());
                }
                v
            })
            .collect()
    }

    /// Roles (`stt`, `llm`, `tts`) none of whose providers is usable; a call
    /// needs one of each.
    pub fn unready_roles(&self) -> Vec<&'static str> {
        let entries = self.snapshot();
        let mut roles: Vec<&'static str> = entries.iter().map(|e| e.role).collect();
        roles.dedup();
        roles
            .into_iter()
            .filter(|role| !entries.iter().any(|e| e.role == *role && e.usable()))
            .collect()
    }

    /// Checks every provider once; logs each change of state.
    pub async fn check(&self, providers: &Providers, limit: Duration) {
        let results = providers.check(limit).await;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() != results.len()
            || entries
                .iter()
                .zip(&results)
                .any(|(e, (role, provider, _))| e.role != *role || e.provider != *provider)
        {
            return; // replaced while this round ran: the next round checks the new set
        }
        for (entry, (_, _, result)) in entries.iter_mut().zip(results) {
            let state = match result {
                Ok(detail) => State::Healthy { detail },
                Err(e) => State::Unhealthy {
                    kind: e.kind(),
                    detail: e.to_string(),
                },
            };
            let (role, provider) = (entry.role, entry.provider);
            match (&entry.state, &state) {
                (State::Unhealthy { .. }, State::Unhealthy { .. })
                | (State::Healthy { .. }, State::Healthy { .. }) => {}
                (_, State::Unhealthy { kind, detail }) => {
                    tracing::warn!(role, provider, kind, error = %detail, "provider unhealthy");
                }
                (State::Unhealthy { .. }, State::Healthy { .. }) => {
                    tracing::info!(role, provider, "provider healthy again");
                }
                (_, State::Healthy { detail }) => {
                    tracing::info!(role, provider, %detail, "provider healthy");
                }
                (_, State::Unknown) => {}
            }
            let up = if matches!(state, State::Unhealthy { .. }) {
                0.0
            } else {
                1.0
            };
            metrics::gauge!(m::PROVIDER_UP, "role" => role, "provider" => provider).set(up);
            entry.state = state;
        }
    }

    /// Checks now and then every `every` (and at once after a reload), for
    /// the life of the process, on whatever providers are current.
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        limit: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let health = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = health.now.notified() => {}
                }
                let providers = health
                    .providers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                health.check(&providers, limit).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(role: &'static str, provider: &'static str, state: State) -> Entry {
        Entry {
            role,
            provider,
            simulated: false,
            state,
        }
    }

    fn health(entries: Vec<Entry>) -> ProviderHealth {
        let policy = hark_actors::PolicyFile::default();
        ProviderHealth {
            entries: Mutex::new(entries),
            providers: Mutex::new(Providers::simulated(&policy)),
            now: tokio::sync::Notify::new(),
        }
    }

    #[test]
    fn the_public_view_has_no_error_text() {
        let h = health(vec![entry(
            "stt",
            "deepgram",
            State::Unhealthy {
                kind: "connect",
                detail: "error sending request for url (http://10.1.2.3:8080/v1/projects)".into(),
            },
        )]);
        let public = serde_json::Value::Array(h.public_snapshot()).to_string();
        assert!(
            !public.contains("10.1.2.3") && public.contains("connect"),
            "{public}"
        );
    }

    fn down() -> State {
        State::Unhealthy {
            kind: "connect",
            detail: "refused".into(),
        }
    }

    #[test]
    fn a_role_is_ready_while_any_of_its_providers_is_usable() {
        let h = health(vec![
            entry("stt", "deepgram", down()),
            entry("stt", "openai", State::Unknown),
            entry("llm", "openai", down()),
            entry("llm", "groq", down()),
            entry(
                "tts",
                "elevenlabs",
                State::Healthy {
                    detail: "voice".into(),
                },
            ),
        ]);
        assert_eq!(h.unready_roles(), vec!["llm"]);
    }

    #[tokio::test]
    async fn simulated_providers_check_healthy() {
        let policy = hark_actors::PolicyFile::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/default.toml"
        )))
        .unwrap();
        let providers = Providers::simulated(&policy);
        let h = ProviderHealth::new(&providers);
        assert!(h.snapshot().iter().all(|e| e.state == State::Unknown));
        h.check(&providers, Duration::from_secs(1)).await;
        assert!(
            h.snapshot()
                .iter()
                .all(|e| matches!(e.state, State::Healthy { .. }))
        );
        assert!(h.unready_roles().is_empty());
    }

    #[test]
    fn unhealthy_serializes_with_its_kind_and_detail() {
        let json = serde_json::to_value(entry("llm", "openai", down())).unwrap();
        assert_eq!(json["state"], "unhealthy");
        assert_eq!(json["kind"], "connect");
        assert_eq!(json["detail"], "refused");
        assert_eq!(json["provider"], "openai");
    }
}
