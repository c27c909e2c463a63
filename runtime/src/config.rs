//! Runtime configuration: defaults ← `--config FILE` ← `HARK_*` environment ←
//! command-line flags. No file is needed; every knob has a default.
//!
//! Environment overrides name a key in upper case with `HARK_` in front and
//! `__` between nested keys: `HARK_SHUTDOWN_GRACE_SECS=5`,
//! `HARK_CALL__RESTART_BUDGET=5`. Values are read as TOML values (numbers,
//! booleans) and fall back to plain strings. `HARK_LOG` (the log filter) is
//! not a config key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hark_actors::CallSettings;

use crate::http_limits::HttpSettings;
use hark_actors::providers::ProviderEndpoints;
use serde::{Deserialize, Serialize};

/// Environment variables with the `HARK_` prefix that are not config keys.
/// (`HARK_PII_*` and `HARK_STREAM_TOKEN_KEY` are secrets: read straight from
/// the environment, never a file.)
const NOT_CONFIG: &[&str] = &[
    "HARK_LOG",
    "HARK_PII_KEYS",
    "HARK_PII_HASH_KEY",
    crate::stream_token::STREAM_TOKEN_KEY_ENV,
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket.
    pub listen: SocketAddr,
    /// `host[:port]` Twilio reaches this node at (the stream URL in TwiML).
    /// Unset: the `Host` header of the webhook request.
    pub public_host: Option<String>,
    /// One policy file every call runs with (`--policy`). Unset, with
    /// `policies` unset too: the default policy built into the binary
    /// (`policies/default.toml`).
    pub policy: Option<PathBuf>,
    /// A folder whose every valid `*.toml` is a live policy (`--policies`);
    /// `routing` picks one per call. Not together with `policy`.
    pub policies: Option<PathBuf>,
    /// Called number or prefix → policy, and the default policy.
    pub routing: crate::policies::Routing,
    /// How long the policy folder must be quiet after a change before it is
    /// read again (one save makes several file events).
    pub policy_watch_debounce_ms: u64,
    /// On SIGTERM/SIGINT, how long calls in progress may go on before they
    /// are ended with the policy's goodbye.
    pub shutdown_grace_secs: u64,
    /// Calls this node takes at once; more get HTTP 503.
    pub max_calls: usize,
    /// A stream that sends no `start` within this time is closed.
    pub start_timeout_secs: u64,
    /// Twilio messages larger than this are counted and skipped.
    pub max_message_bytes: usize,
    /// Threads serving calls; each call stays on one. 0: one per core.
    pub worker_threads: usize,
    /// Per-call settings.
    pub call: CallSettings,
    /// Provider endpoints and the environment variables holding their keys.
    pub providers: ProviderEndpoints,
    /// Where call records go: `postgres://…` or `sqlite://FILE?mode=rwc`.
    pub database_url: String,
    /// Local state: the record spool, the SQLite file, development PII keys.
    pub data_dir: PathBuf,
    /// This node's name on its records. Empty: the host name.
    pub node: String,
    /// Call attempts one caller may make per hour; more get `<Reject/>`. 0: no limit.
    pub caller_calls_per_hour: u32,
    /// Admin API requests per second per token (bursts of twice that); more get 429.
    pub api_requests_per_second: u32,
    /// Failed admin API authentications one client address may make in a
    /// minute; past it the address gets 429 until the minute is over.
    pub api_auth_failures_per_minute: u32,
    /// Transcripts older than this are deleted (hourly purge). 0: kept forever.
    pub retention_days: u64,
    /// Recordings older than this are deleted (hourly purge). 0: as
    /// `retention_days` (recordings go with their transcripts).
    pub recording_retention_days: u64,
    /// Call recordings: where they are stored, how they are encoded.
    pub recordings: crate::recordings::RecordingSettings,
    /// Serve without Twilio signatures (no `TWILIO_AUTH_TOKEN`) on an address
    /// that is not loopback. Off: `hark serve` refuses, since anyone who can
    /// reach the node could then start calls.
    pub allow_unsigned_requests: bool,
    /// A call whose stream sends nothing for this long is ended
    /// (`media_timeout`); Twilio sends media every 20 ms, silence included.
    pub media_timeout_secs: u64,
    /// A write to a call's socket that takes longer ends the call
    /// (`outbound_stalled`).
    pub write_timeout_secs: u64,
    /// How long a stream token (minted by the voice webhook) stays valid: it
    /// must cover ringing and answering-machine detection of outbound calls.
    pub stream_token_ttl_secs: u64,
    /// Limits on the HTTP listener.
    pub http: HttpSettings,
    /// Placing calls: the default region and caller ID, ring time.
    pub outbound: crate::outbound::OutboundSettings,
    /// The cluster's Redis (`redis://host:port/db`, `HARK_REDIS_URL`). Empty:
    /// one node on its own, with in-process registry and limits. Set: the
    /// node registers, places calls across nodes and shares limits; it
    /// requires PostgreSQL.
    pub redis_url: String,
    /// Heartbeat, lost-node TTL, capacity and the load limit, the advertised URL.
    pub cluster: crate::cluster::settings::ClusterSettings,
    /// Campaigns: the scheduler, default calling windows per country.
    pub campaigns: crate::campaigns::CampaignSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_host: None,
            policy: None,
            policies: None,
            routing: crate::policies::Routing::default(),
            policy_watch_debounce_ms: 300,
            shutdown_grace_secs: 30,
            max_calls: 10_000,
            start_timeout_secs: 10,
            max_message_bytes: 64 * 1024,
            worker_threads: 0,
            call: CallSettings::default(),
            providers: ProviderEndpoints::default(),
            database_url: "sqlite://hark-data/hark.db?mode=rwc".into(),
            data_dir: PathBuf::from("hark-data"),
            node: String::new(),
            caller_calls_per_hour: 30,
            api_requests_per_second: 20,
            api_auth_failures_per_minute: 20,
            retention_days: 90,
            recording_retention_days: 0,
            recordings: crate::recordings::RecordingSettings::default(),
            allow_unsigned_requests: false,
            media_timeout_secs: 5,
            write_timeout_secs: 5,
            stream_token_ttl_secs: 300,
            http: HttpSettings::default(),
            outbound: crate::outbound::OutboundSettings::default(),
            redis_url: String::new(),
            cluster: crate::cluster::settings::ClusterSettings::default(),
            campaigns: crate::campaigns::CampaignSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message, not a `source`: the error chain prints it once.
    #[error("cannot read config file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration ({origin}): {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Days recordings are kept (0: forever).
    pub fn recording_days(&self) -> u64 {
        if self.recording_retention_days > 0 {
            self.recording_retention_days
        } else {
            self.retention_days
        }
    }

    /// The node name on records: `node`, else the host name.
    pub fn node_name(&self) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "local".into())
    }

    /// Where the node's policies come from.
    pub fn policy_source(&self) -> Result<crate::policies::Source, ConfigError> {
        use crate::policies::Source;
        match (&self.policy, &self.policies) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                origin: "policy, policies".into(),
                message: "set one of policy (one file) and policies (a folder), not both".into(),
            }),
            (Some(file), None) => Ok(Source::File(file.clone())),
            (None, Some(dir)) if !dir.is_dir() => Err(ConfigError::Invalid {
                origin: "policies".into(),
                message: format!("{} is not a folder", dir.display()),
            }),
            (None, Some(dir)) => Ok(Source::Folder(dir.clone())),
            (None, None) => Ok(Source::BuiltIn),
        }
    }

    /// The default policy (what `hark doctor` checks): `policy`; in a
    /// `policies` folder, `routing.default` or `default.toml`; else the
    /// built-in one.
    pub fn load_policy(&self) -> Result<hark_actors::PolicyFile, hark_actors::PolicyError> {
        match self.default_policy_file() {
            Some(path) => hark_actors::PolicyFile::load(&path),
            None => hark_actors::PolicyFile::builtin(),
        }
    }

    fn default_policy_file(&self) -> Option<PathBuf> {
        if let Some(file) = &self.policy {
            return Some(file.clone());
        }
        let dir = self.policies.as_ref()?;
        let name = self.routing.default.as_deref().unwrap_or("default");
        // The file is usually named after its policy; else look inside.
        let named = dir.join(format!("{name}.toml"));
        if named.is_file() {
            return Some(named);
        }
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| hark_actors::PolicyFile::load(p).is_ok_and(|pf| pf.name == name))
    }

    /// Where the default policy comes from, for people: its file, or "built in".
    pub fn policy_origin(&self) -> String {
        self.default_policy_file()
            .map_or_else(|| "built in".to_owned(), |p| p.display().to_string())
    }

    pub fn policy_watch_debounce(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.policy_watch_debounce_ms)
    }

    /// Whether the database is shared by several nodes (PostgreSQL).
    pub fn is_shared_database(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }

    pub fn media_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.media_timeout_secs)
    }

    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_secs)
    }

    /// Loads the configuration from an optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Start from the defaults so a file or variable can set one key of a
        // section (`HARK_PROVIDERS__DEEPGRAM__BASE_URL`) and keep the rest.
        let mut table =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
                origin: "defaults".into(),
                message: e.to_string(),
            })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
                path: path.to_owned(),
                error,
            })?;
            let overrides: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            merge(&mut table, overrides);
            // Type-check the file on its own so its errors name the file.
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| ConfigError::File {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("HARK_") && !NOT_CONFIG.contains(&k.as_str()))
            .collect();
        vars.sort();
        let path = |var: &str| -> Vec<String> {
            var["HARK_".len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect()
        };
        let check = |t: &toml::Table| toml::Value::Table(t.clone()).try_into::<Config>();
        let base = table.clone();
        for (var, raw) in &vars {
            set_path(&mut table, &path(var), parse_value(raw));
        }
        if let Err(all) = check(&table) {
            // Name the variable: the first that is wrong on its own. (Alone,
            // one key of a new table may lack its siblings; that is not it.)
            for (var, raw) in &vars {
                let mut alone = base.clone();
                set_path(&mut alone, &path(var), parse_value(raw));
                if let Err(e) = check(&alone)
                    && !e.message().starts_with("missing field")
                {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        message: e.message().to_owned(),
                    });
                }
            }
            let names: Vec<&str> = vars.iter().map(|(v, _)| v.as_str()).collect();
            return Err(ConfigError::Env {
                var: names.join(", "),
                message: all.message().to_owned(),
            });
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: "merged".into(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = self.call.validate();
        errors.extend(self.providers.validate());
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
            || self.database_url.starts_with("sqlite:"))
        {
            errors.push("database_url: must start with postgres:// or sqlite:".into());
        }
        if self.max_calls == 0 {
            errors.push("max_calls: must be at least 1".into());
        }
        if !(1024..=1 << 20).contains(&self.max_message_bytes) {
            errors.push(format!(
                "max_message_bytes: {} is outside 1024..=1048576",
                self.max_message_bytes
            ));
        }
        if self.start_timeout_secs == 0 {
            errors.push("start_timeout_secs: must be at least 1".into());
        }
        for (field, v, lo, hi) in [
            ("media_timeout_secs", self.media_timeout_secs, 1, 600),
            ("write_timeout_secs", self.write_timeout_secs, 1, 600),
            (
                "stream_token_ttl_secs",
                self.stream_token_ttl_secs,
                1,
                86_400,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                errors.push(format!("{field}: {v} is outside {lo}..={hi}"));
            }
        }
        errors.extend(self.http.validate(self.max_calls));
        errors.extend(self.outbound.validate());
        errors.extend(self.cluster.validate());
        errors.extend(self.campaigns.validate());
        if !self.redis_url.is_empty() {
            if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"))
            {
                errors.push("redis_url: must start with redis:// or rediss://".into());
            } else if !self.is_shared_database() {
                errors.push(
                    "redis_url: a cluster needs PostgreSQL (database_url = postgres://…): its nodes share records, keys and placements"
                        .into(),
                );
            }
        }
        errors.extend(self.routing.validate());
        if self.policy.is_some() && self.policies.is_some() {
            errors.push(
                "policy, policies: set one of policy (one file) and policies (a folder), not both"
                    .into(),
            );
        }
        if !(10..=60_000).contains(&self.policy_watch_debounce_ms) {
            errors.push(format!(
                "policy_watch_debounce_ms: {} is outside 10..=60000",
                self.policy_watch_debounce_ms
            ));
        }
        if self.api_auth_failures_per_minute == 0 {
            errors.push("api_auth_failures_per_minute: must be at least 1".into());
        }
        if self.retention_days > 36_500 {
            errors.push(format!(
                "retention_days: {} is over 36500 (100 years); 0 keeps everything",
                self.retention_days
            ));
        }
        if self.recording_retention_days > 36_500 {
            errors.push(format!(
                "recording_retention_days: {} is over 36500; 0 follows retention_days",
                self.recording_retention_days
            ));
        }
        errors.extend(
            self.recordings
                .validate()
                .into_iter()
                .map(|(field, reason)| format!("{field}: {reason}")),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: "config".into(),
                message: errors.join("; "),
            })
        }
    }
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Deep-merges `over` into `base`: tables merge key by key, other values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for key in parents {
        let entry = t
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        t = inner;
    }
    t.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = Config::load_from(None, env(&[("PATH", "/bin"), ("HARK_LOG", "debug")])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn env_overrides_file_and_nests_with_double_underscore() {
        let dir = std::env::temp_dir().join(format!("hark-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hark.toml");
        std::fs::write(
            &file,
            "shutdown_grace_secs = 7\n[call]\nrestart_budget = 9\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[
                ("HARK_CALL__RESTART_BUDGET", "2"),
                ("HARK_LISTEN", "0.0.0.0:9000"),
                ("HARK_PUBLIC_HOST", "abc.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(c.shutdown_grace_secs, 7);
        assert_eq!(c.call.restart_budget, 2);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.public_host.as_deref(), Some("abc.example.com"));
    }

    #[test]
    fn a_new_named_endpoint_takes_all_its_keys_from_variables() {
        let env = [
            (
                "HARK_PROVIDERS__OPENAI_COMPATIBLE__GROQ__API_KEY_ENV",
                "GROQ_API_KEY",
            ),
            (
                "HARK_PROVIDERS__OPENAI_COMPATIBLE__GROQ__BASE_URL",
                "https://api.groq.com/openai/v1",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load_from(None, env).unwrap();
        assert_eq!(
            c.providers.openai_compatible["groq"].api_key_env,
            "GROQ_API_KEY"
        );
        let half = [(
            "HARK_PROVIDERS__OPENAI_COMPATIBLE__GROQ__API_KEY_ENV".to_owned(),
            "GROQ_API_KEY".to_owned(),
        )];
        let e = Config::load_from(None, half).unwrap_err().to_string();
        assert!(
            e.contains("OPENAI_COMPATIBLE__GROQ__API_KEY_ENV") && e.contains("base_url"),
            "{e}"
        );
    }

    #[test]
    fn one_key_of_a_provider_endpoint_keeps_the_others() {
        let c = Config::load_from(
            None,
            env(&[("HARK_PROVIDERS__DEEPGRAM__BASE_URL", "http://127.0.0.1:9")]),
        )
        .unwrap();
        assert_eq!(c.providers.deepgram.base_url, "http://127.0.0.1:9");
        assert_eq!(c.providers.deepgram.api_key_env, "DEEPGRAM_API_KEY");
        assert_eq!(c.providers.openai, ProviderEndpoints::default().openai);
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        let err = Config::load_from(None, env(&[("HARK_LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HARK_LISTN") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = Config::load_from(None, env(&[("HARK_MAX_CALLS", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HARK_MAX_CALLS"), "{err}");
    }

    #[test]
    fn lists_and_new_sections_come_from_the_environment() {
        let c = Config::load_from(
            None,
            env(&[
                (
                    "HARK_HTTP__TRUSTED_PROXIES",
                    r#"["10.0.0.0/8", "192.168.1.1"]"#,
                ),
                ("HARK_ALLOW_UNSIGNED_REQUESTS", "true"),
                ("HARK_MEDIA_TIMEOUT_SECS", "9"),
                ("HARK_POLICY", "/etc/hark/support.toml"),
                ("HARK_STREAM_TOKEN_KEY", "not a config key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "192.168.1.1"]);
        assert!(c.allow_unsigned_requests);
        assert_eq!(c.media_timeout_secs, 9);
        assert_eq!(c.policy, Some(PathBuf::from("/etc/hark/support.toml")));
        let err = Config::load_from(None, env(&[("HARK_HTTP__TRUSTED_PROXIES", r#"["x"]"#)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.trusted_proxies"), "{err}");
    }

    #[test]
    fn retention_days_and_auth_limits_are_validated() {
        let err = Config::load_from(None, env(&[("HARK_RETENTION_DAYS", "99999999999999")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention_days"), "{err}");
        let err = Config::load_from(None, env(&[("HARK_API_AUTH_FAILURES_PER_MINUTE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_auth_failures_per_minute"), "{err}");
    }

    #[test]
    fn a_cluster_needs_redis_by_url_and_postgres() {
        let e = Config::load_from(None, env(&[("HARK_REDIS_URL", "redis://127.0.0.1:6379")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis_url") && e.contains("PostgreSQL"), "{e}");
        let e = Config::load_from(
            None,
            env(&[
                ("HARK_REDIS_URL", "localhost:6379"),
                ("HARK_DATABASE_URL", "postgres://h/db"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("redis_url: must start with redis://"), "{e}");
        let ok = Config::load_from(
            None,
            env(&[
                ("HARK_REDIS_URL", "redis://10.0.0.9:6379/0"),
                ("HARK_DATABASE_URL", "postgres://h/db"),
                ("HARK_CLUSTER__TTL_MS", "1000"),
                ("HARK_CLUSTER__HEARTBEAT_MS", "200"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.cluster.ttl_ms, 1000);
        let e = Config::load_from(None, env(&[("HARK_CLUSTER__TTL_MS", "100")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.ttl_ms"), "{e}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let err = Config::load_from(None, env(&[("HARK_CALL__PLAYBACK_LEAD_MS", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("call.playback_lead_ms"), "{err}");
    }
}
