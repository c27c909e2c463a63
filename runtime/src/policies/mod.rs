//! The policies a node serves: every valid file in its policy folder is live
//! at once; each call gets one, by the number it called (or by name, for an
//! outbound call), and keeps that version to its end.
//!
//! A change on disk is picked up by a rescan (the folder watcher, or the
//! reload API): a file whose text changed is parsed again; a valid one
//! replaces its policy for calls that start after it, an invalid one is
//! refused with every error while its previous version stays live, and a
//! removed one stops taking calls (they get the default). The default itself
//! is never left without a policy: if its file goes, its last version stays.
//!
//! # Layout
//! - [`routing`] — `[routing]`: called number or prefix → policy name.
//! - `scan.rs` — a rescan: which files changed, what is applied, refused or retired.
//! - [`watch`] — the folder watcher (notify, debounced) that triggers rescans.
//! - `tests.rs` — loading, routing, rescans on real files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hark_actors::context::{Languages, Spoken};
use hark_actors::providers::{Keys, Notice, ProviderEndpoints};
use hark_actors::{PolicyError, PolicyFile, Providers};

pub mod routing;
mod scan;
pub mod watch;

pub use routing::Routing;
pub use scan::error_lines;

/// `hark_policy_reloads_total{result}`: `applied`, `invalid` (the file was
/// refused; the old version stays live), `providers` (its providers could
/// not be built), `removed` (the file is gone).
pub const POLICY_RELOADS: &str = "hark_policy_reloads_total";
/// `hark_policies_live`: policies new calls can get.
pub const POLICIES_LIVE: &str = "hark_policies_live";

/// A policy calls can start with, and its providers. Calls hold the `Arc`
/// they started with, so a reload never touches a call in progress.
pub struct Live {
    pub policy: Arc<PolicyFile>,
    pub providers: Providers,
    /// The file it came from; `None` for the built-in default.
    pub file: Option<PathBuf>,
    /// Providers it names that have no API key (simulated instead).
    pub notices: Vec<Notice>,
    /// Its other languages, each with providers for it, for switching mid-call.
    pub languages: Languages,
}

/// Where policies come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The default policy compiled into the binary, alone.
    BuiltIn,
    /// One file (`--policy FILE`): it is the default.
    File(PathBuf),
    /// Every `*.toml` in a folder (`--policies DIR`).
    Folder(PathBuf),
}

impl Source {
    /// The policy files to read, sorted.
    fn files(&self) -> Vec<PathBuf> {
        match self {
            Source::BuiltIn => Vec::new(),
            Source::File(file) => vec![file.clone()],
            Source::Folder(dir) => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                files
            }
        }
    }

    /// The folder a watcher follows (a single file's folder, so that an
    /// editor's write-to-temp-and-rename is seen too).
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Source::BuiltIn => None,
            Source::File(file) => Some(file.parent().unwrap_or(Path::new("."))),
            Source::Folder(dir) => Some(dir),
        }
    }
}

/// What one policy file holds now.
#[derive(Debug, Clone, Default)]
pub struct FileState {
    /// The policy's name (its file stem while it has never been valid).
    pub name: String,
    /// The version of its live policy; empty while it has never been valid.
    pub version: String,
    /// Why the text on disk is refused (field, line and reason each).
    pub errors: Vec<String>,
    /// The live policy this file supplies, if any (an older version when
    /// `errors` is not empty).
    pub serving: Option<String>,
    digest: u64,
}

/// One consistent view: swapped whole by a rescan.
#[derive(Default)]
pub struct Catalog {
    live: BTreeMap<String, Arc<Live>>,
    /// The version each policy had before its last change (or removal), for
    /// streams whose token was minted just before it.
    previous: BTreeMap<String, Arc<Live>>,
    default: String,
    files: BTreeMap<PathBuf, FileState>,
}

impl Catalog {
    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn files(&self) -> &BTreeMap<PathBuf, FileState> {
        &self.files
    }

    pub fn live(&self) -> impl Iterator<Item = &Arc<Live>> {
        self.live.values()
    }

    /// Every policy version a stream may name here (current and previous),
    /// as the cluster registry lists them: `,name@version,…,`.
    pub fn versions_tag(&self) -> String {
        let mut tag = String::from(",");
        for live in self.live.values().chain(self.previous.values()) {
            tag.push_str(&live.policy.name);
            tag.push('@');
            tag.push_str(&live.policy.version);
            tag.push(',');
        }
        tag
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Live>> {
        self.live.get(name)
    }

    /// The default policy: always present once loaded.
    fn default_live(&self) -> Option<&Arc<Live>> {
        self.live.get(&self.default)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("providers of policy {policy:?}: {message}")]
    Providers { policy: String, message: String },
    #[error("routing: {0}")]
    Routing(String),
}

/// What a rescan changed, per file.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Applied { name: String, version: String },
    Invalid { name: String, errors: usize },
    Removed { name: String },
}

pub struct Policies {
    source: Source,
    routing: Routing,
    endpoints: ProviderEndpoints,
    keys: Keys,
    catalog: ArcSwap<Catalog>,
    /// One rescan at a time (the watcher and the API may both ask).
    scanning: Mutex<()>,
}

impl Policies {
    /// Reads every policy of `source`. Refuses to start when the default
    /// cannot be loaded (a single `--policy FILE` that is invalid, or a
    /// `routing.default` naming no valid file); another invalid file in a
    /// folder is logged with its errors and left out.
    pub fn load(
        source: Source,
        routing: Routing,
        endpoints: ProviderEndpoints,
        keys: Keys,
    ) -> Result<(Self, Vec<Notice>), LoadError> {
        let problems = routing.validate();
        if !problems.is_empty() {
            return Err(LoadError::Routing(problems.join("; ")));
        }
        if let Source::File(file) = &source {
            // A single file must be valid to start, as before folders existed.
            PolicyFile::load(file)?;
        }
        let policies = Self {
            source,
            routing,
            endpoints,
            keys,
            catalog: ArcSwap::from_pointee(Catalog::default()),
            scanning: Mutex::new(()),
        };
        let (mut catalog, _) = policies.scan(&Catalog::default(), false);
        let default = match (&policies.source, &policies.routing.default) {
            (Source::File(file), _) => catalog
                .files
                .get(file)
                .and_then(|f| f.serving.clone())
                .unwrap_or_default(),
            (_, Some(name)) => name.clone(),
            (_, None) => "default".to_owned(),
        };
        if !catalog.live.contains_key(&default) {
            if policies.routing.default.is_some() || matches!(policies.source, Source::File(_)) {
                let why = catalog
                    .files
                    .values()
                    .find(|f| f.name == default)
                    .map(|f| f.errors.join("; "))
                    .unwrap_or_else(|| "no file in the folder holds it".into());
                return Err(LoadError::Routing(format!(
                    "the default policy {default:?} cannot be loaded: {why}"
                )));
            }
            let policy = Arc::new(PolicyFile::builtin()?);
            let (providers, notices) = policies.build(&policy)?;
            catalog.live.insert(
                default.clone(),
                Arc::new(Live {
                    languages: policies.languages(&policy),
                    policy,
                    providers,
                    file: None,
                    notices,
                }),
            );
        }
        // Only the default's providers are printed in the banner.
        let notices = catalog
            .live
            .get(&default)
            .map(|l| l.notices.clone())
            .unwrap_or_default();
        catalog.default = default;
        for (number, name) in &policies.routing.numbers {
            if !catalog.live.contains_key(name) {
                tracing::warn!(route = %number, policy = %name, "routing names a policy that is not live; its calls get the default");
            }
        }
        metrics::gauge!(POLICIES_LIVE).set(catalog.live.len() as f64);
        policies.catalog.store(Arc::new(catalog));
        Ok((policies, notices))
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// The default policy.
    pub fn default_live(&self) -> Arc<Live> {
        let catalog = self.catalog.load();
        match catalog.default_live() {
            Some(live) => Arc::clone(live),
            // Unreachable once loaded: the default is never removed.
            None => self.emergency(),
        }
    }

    /// The policy for a new call to `called`, or the one an outbound call
    /// names. A name that is not live gets the default, with a warning.
    pub fn route(&self, called: &str, named: Option<&str>) -> Arc<Live> {
        let catalog = self.catalog.load();
        let wanted = named
            .filter(|n| !n.is_empty())
            .or_else(|| self.routing.route(called));
        if let Some(name) = wanted {
            if let Some(live) = catalog.live.get(name) {
                return Arc::clone(live);
            }
            tracing::warn!(policy = %name, default = %catalog.default, "the call's policy is not live (removed or never valid); it gets the default");
        }
        drop(catalog);
        self.default_live()
    }

    /// The policy a stream token names: that version while this node still
    /// holds it (the current or the one before), else the current one.
    pub fn resolve(&self, name: &str, version: &str) -> Arc<Live> {
        let catalog = self.catalog.load();
        let current = catalog.live.get(name);
        if let Some(live) = current.filter(|l| version.is_empty() || l.policy.version == version) {
            return Arc::clone(live);
        }
        if let Some(live) = catalog
            .previous
            .get(name)
            .filter(|l| l.policy.version == version)
        {
            return Arc::clone(live);
        }
        if let Some(live) = current {
            tracing::info!(policy = %name, wanted = %version, version = %live.policy.version, "the token's policy version is gone; the call gets the current one");
            return Arc::clone(live);
        }
        drop(catalog);
        self.route("", Some(name))
    }

    /// Reads the files again and applies what changed (counted in
    /// `hark_policy_reloads_total`); returns the changes.
    pub fn rescan(&self) -> Vec<Change> {
        let _one = self.scanning.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.catalog.load_full();
        let (catalog, changes) = self.scan(&old, true);
        metrics::gauge!(POLICIES_LIVE).set(catalog.live.len() as f64);
        self.catalog.store(Arc::new(catalog));
        changes
    }

    /// How a call of `policy` sounds in each of its other languages: the
    /// policy as spoken in it and providers with its STT language and
    /// voices (their notices are the start language's, said already).
    fn languages(&self, policy: &PolicyFile) -> Languages {
        let others = policy
            .languages
            .keys()
            .filter(|code| **code != policy.language)
            .map(|code| {
                let spoken = policy.in_language(code);
                let providers = match Providers::build(&spoken, &self.endpoints, &self.keys) {
                    Ok((p, _)) => p,
                    Err(_) => Providers::simulated(&spoken),
                };
                let spoken = Spoken {
                    code: code.clone(),
                    policy: Arc::new(spoken),
                    providers,
                };
                (code.clone(), spoken)
            })
            .collect();
        Arc::new(others)
    }

    fn build(&self, policy: &PolicyFile) -> Result<(Providers, Vec<Notice>), LoadError> {
        Providers::build(policy, &self.endpoints, &self.keys).map_err(|message| {
            LoadError::Providers {
                policy: policy.name.clone(),
                message,
            }
        })
    }

    /// Only if the catalog lost its default, which `scan` never lets happen.
    fn emergency(&self) -> Arc<Live> {
        tracing::error!("no default policy is live; using the built-in one");
        let policy = PolicyFile::builtin().unwrap_or_default();
        let providers = match Providers::build(&policy, &self.endpoints, &self.keys) {
            Ok((p, _)) => p,
            Err(_) => Providers::simulated(&policy),
        };
        Arc::new(Live {
            languages: self.languages(&policy),
            policy: Arc::new(policy),
            providers,
            file: None,
            notices: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
