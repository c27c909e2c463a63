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
//! - [`watch`] — the folder watcher (notify, debounced) that triggers rescans.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hark_actors::providers::{Keys, Notice, ProviderEndpoints};
use hark_actors::{PolicyError, PolicyFile, Providers};

pub mod routing;
pub mod watch;

pub use routing::Routing;

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
        // Only the default's providers are printed in the banner.
        let mut notices = Vec::new();
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
            let (providers, built_notices) = policies.build(&policy)?;
            notices = built_notices;
            catalog.live.insert(
                default.clone(),
                Arc::new(Live {
                    policy,
                    providers,
                    file: None,
                }),
            );
        } else if let Some(live) = catalog.live.get(&default) {
            notices = policies.build(&live.policy)?.1;
        }
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

    fn build(&self, policy: &PolicyFile) -> Result<(Providers, Vec<Notice>), LoadError> {
        Providers::build(policy, &self.endpoints, &self.keys).map_err(|message| {
            LoadError::Providers {
                policy: policy.name.clone(),
                message,
            }
        })
    }

    /// The next catalog from `old` and the files on disk. `count`: record
    /// the changes in metrics (not at start).
    fn scan(&self, old: &Catalog, count: bool) -> (Catalog, Vec<Change>) {
        let mut next = Catalog {
            live: old.live.clone(),
            previous: old.previous.clone(),
            default: old.default.clone(),
            files: BTreeMap::new(),
        };
        let mut changes = Vec::new();
        let record = |result: &'static str| {
            if count {
                metrics::counter!(POLICY_RELOADS, "result" => result).increment(1);
            }
        };
        let paths = self.source.files();
        for path in paths.iter().cloned() {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let before = old.files.get(&path).cloned();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    // Mid-rename or unreadable: keep what it served.
                    let mut state = before.unwrap_or_default();
                    state.errors = vec![format!("cannot read {}: {error}", path.display())];
                    if state.name.is_empty() {
                        state.name = stem;
                    }
                    next.files.insert(path, state);
                    continue;
                }
            };
            let digest = digest(&text);
            if let Some(before) = before.as_ref().filter(|b| b.digest == digest) {
                next.files.insert(path, before.clone());
                continue;
            }
            let serving = before.as_ref().and_then(|b| b.serving.clone());
            let origin = path.display().to_string();
            let parsed = PolicyFile::parse(&text, &origin, &stem).and_then(|p| {
                // Two files may not claim one name: the first (by file name) keeps it.
                let claims = |(other, f): &(&PathBuf, &FileState)| {
                    **other != path && f.serving.as_deref() == Some(p.name.as_str())
                };
                let taken = next.files.iter().find(claims).or_else(|| {
                    old.files
                        .iter()
                        .filter(|(other, _)| paths.contains(other))
                        .find(claims)
                });
                match taken {
                    Some((other, _)) => Err(PolicyError::Invalid {
                        origin: origin.clone(),
                        errors: vec![hark_actors::policy::FieldError {
                            field: "name".into(),
                            reason: format!(
                                "{:?} is already the name of {}",
                                p.name,
                                other.display()
                            ),
                            line: None,
                        }],
                    }),
                    None => Ok(p),
                }
            });
            let refused = |errors: Vec<String>, state: Option<FileState>| FileState {
                name: state
                    .as_ref()
                    .map_or_else(|| stem.clone(), |s| s.name.clone()),
                version: state
                    .as_ref()
                    .map(|s| s.version.clone())
                    .unwrap_or_default(),
                errors,
                serving: state.and_then(|s| s.serving),
                digest,
            };
            match parsed {
                Ok(policy) => match self.build(&policy) {
                    Ok((providers, _)) => {
                        let name = policy.name.clone();
                        let version = policy.version.clone();
                        if let Some(old_name) = serving.as_ref().filter(|n| **n != name) {
                            // Renamed: the old name stops taking calls.
                            self.retire(&mut next, old_name);
                        }
                        if let Some(prev) = next.live.insert(
                            name.clone(),
                            Arc::new(Live {
                                policy: Arc::new(policy),
                                providers,
                                file: Some(path.clone()),
                            }),
                        ) {
                            next.previous.insert(name.clone(), prev);
                        }
                        if count {
                            tracing::info!(policy = %name, %version, file = %path.display(), "policy applied: calls that start now use it");
                        }
                        record("applied");
                        changes.push(Change::Applied {
                            name: name.clone(),
                            version: version.clone(),
                        });
                        next.files.insert(
                            path,
                            FileState {
                                name: name.clone(),
                                version,
                                errors: Vec::new(),
                                serving: Some(name),
                                digest,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "policy refused: its providers cannot be built; the previous version stays live");
                        record("providers");
                        changes.push(Change::Invalid {
                            name: stem.clone(),
                            errors: 1,
                        });
                        next.files
                            .insert(path.clone(), refused(vec![e.to_string()], before));
                    }
                },
                Err(e) => {
                    let errors = error_lines(&e);
                    for error in &errors {
                        tracing::warn!(file = %path.display(), %error, "policy error");
                    }
                    tracing::warn!(file = %path.display(), errors = errors.len(), "policy refused; the previous version (if any) stays live");
                    record("invalid");
                    changes.push(Change::Invalid {
                        name: stem.clone(),
                        errors: errors.len(),
                    });
                    next.files.insert(path.clone(), refused(errors, before));
                }
            }
        }
        for (path, state) in &old.files {
            if next.files.contains_key(path) {
                continue;
            }
            let Some(name) = &state.serving else { continue };
            record("removed");
            changes.push(Change::Removed { name: name.clone() });
            if *name == next.default {
                tracing::error!(policy = %name, file = %path.display(), "the default policy's file is gone; its last version stays live");
                continue;
            }
            tracing::warn!(policy = %name, file = %path.display(), default = %next.default, "policy file removed: calls routed to it now get the default");
            self.retire(&mut next, name);
        }
        (next, changes)
    }

    /// `name` stops taking new calls (streams already admitted to it still get it).
    fn retire(&self, next: &mut Catalog, name: &str) {
        if name == next.default {
            return;
        }
        if let Some(live) = next.live.remove(name) {
            next.previous.insert(name.to_owned(), live);
        }
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
            policy: Arc::new(policy),
            providers,
            file: None,
        })
    }
}

/// A policy error as lines: one per field, else the whole message.
pub fn error_lines(e: &PolicyError) -> Vec<String> {
    match e {
        PolicyError::Invalid { errors, .. } => errors.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

fn digest(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(name: &str, version: &str) -> String {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\n[providers]\nstt = [\"sim\"]\nllm = [\"sim\"]\ntts = [\"sim\"]\n"
        )
    }

    fn folder(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hark-policies-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    fn load(dir: &Path, routing: Routing) -> Policies {
        Policies::load(
            Source::Folder(dir.to_owned()),
            routing,
            ProviderEndpoints::default(),
            Keys::default(),
        )
        .unwrap()
        .0
    }

    fn routes(pairs: &[(&str, &str)]) -> Routing {
        Routing {
            default: Some("support".into()),
            numbers: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn every_valid_file_is_live_and_calls_are_routed_by_number() {
        let dir = folder(&[
            ("support.toml", &sim("support", "1")),
            ("sales.toml", &sim("sales", "3")),
            ("broken.toml", "[vad]\nonset_ms = \"fast\"\n"),
        ]);
        let p = load(&dir, routes(&[("+91", "sales")]));
        let names: Vec<String> = p.catalog().live().map(|l| l.policy.name.clone()).collect();
        assert_eq!(names, ["sales", "support"]);
        assert_eq!(p.route("+919812345678", None).policy.name, "sales");
        assert_eq!(p.route("+14155550100", None).policy.name, "support");
        // An outbound call names its policy; a name that is not live gets the default.
        assert_eq!(p.route("+14155550100", Some("sales")).policy.name, "sales");
        assert_eq!(
            p.route("+919812345678", Some("gone")).policy.name,
            "support"
        );
        let catalog = p.catalog();
        let broken = &catalog.files()[&dir.join("broken.toml")];
        assert!(broken.serving.is_none());
        assert!(broken.errors[0].contains("onset_ms"), "{:?}", broken.errors);
    }

    #[test]
    fn a_change_applies_to_new_calls_and_an_invalid_one_keeps_the_old_version() {
        let dir = folder(&[
            ("support.toml", &sim("support", "1")),
            ("sales.toml", &sim("sales", "1")),
        ]);
        let p = load(&dir, routes(&[("+91", "sales")]));
        let during = p.route("+919812345678", None);
        std::fs::write(dir.join("sales.toml"), sim("sales", "2")).unwrap();
        assert_eq!(
            p.rescan(),
            [Change::Applied {
                name: "sales".into(),
                version: "2".into()
            }]
        );
        assert_eq!(p.route("+919812345678", None).policy.version, "2");
        // A call in progress holds the version it started with.
        assert_eq!(during.policy.version, "1");
        // A token minted for version 1 still gets it; an unknown version gets the current one.
        assert_eq!(p.resolve("sales", "1").policy.version, "1");
        assert_eq!(p.resolve("sales", "0").policy.version, "2");
        // Unchanged files are not read as changes.
        assert!(p.rescan().is_empty());
        std::fs::write(
            dir.join("sales.toml"),
            sim("sales", "3") + "[vad]\nendpointing_ms = 5\n",
        )
        .unwrap();
        let changes = p.rescan();
        assert!(
            matches!(&changes[..], [Change::Invalid { name, errors: 1 }] if name == "sales"),
            "{changes:?}"
        );
        assert_eq!(p.route("+919812345678", None).policy.version, "2");
        let catalog = p.catalog();
        let state = &catalog.files()[&dir.join("sales.toml")];
        assert_eq!(state.version, "2");
        assert!(
            state.errors[0].contains("vad.endpointing_ms") && state.errors[0].contains("line 8"),
            "{:?}",
            state.errors
        );
    }

    #[test]
    fn a_removed_file_sends_its_calls_to_the_default_which_is_never_removed() {
        let dir = folder(&[
            ("support.toml", &sim("support", "1")),
            ("sales.toml", &sim("sales", "1")),
        ]);
        let p = load(&dir, routes(&[("+91", "sales")]));
        std::fs::remove_file(dir.join("sales.toml")).unwrap();
        assert_eq!(
            p.rescan(),
            [Change::Removed {
                name: "sales".into()
            }]
        );
        assert_eq!(p.route("+919812345678", None).policy.name, "support");
        // A stream admitted just before still gets what its webhook chose.
        assert_eq!(p.resolve("sales", "1").policy.name, "sales");
        std::fs::remove_file(dir.join("support.toml")).unwrap();
        assert_eq!(
            p.rescan(),
            [Change::Removed {
                name: "support".into()
            }]
        );
        assert_eq!(p.route("+14155550100", None).policy.name, "support");
    }

    #[test]
    fn two_files_may_not_claim_one_name() {
        let dir = folder(&[
            ("a.toml", &sim("support", "1")),
            ("b.toml", &sim("support", "2")),
        ]);
        let p = load(&dir, routes(&[]));
        assert_eq!(p.default_live().policy.version, "1");
        let catalog = p.catalog();
        let b = &catalog.files()[&dir.join("b.toml")];
        assert!(
            b.errors[0].contains("already the name of"),
            "{:?}",
            b.errors
        );
    }

    #[test]
    fn without_a_default_file_the_built_in_policy_is_the_default() {
        let dir = folder(&[("sales.toml", &sim("sales", "1"))]);
        let p = load(&dir, Routing::default());
        assert_eq!(p.default_live().policy.name, "default");
        assert!(p.default_live().file.is_none());
        assert_eq!(p.route("+1", None).policy.name, "default");
    }

    #[test]
    fn a_default_that_cannot_load_stops_the_start_with_its_errors() {
        let dir = folder(&[("support.toml", "name = \"support\"\n[vad]\nonset_ms = 0\n")]);
        let err = Policies::load(
            Source::Folder(dir),
            routes(&[]),
            ProviderEndpoints::default(),
            Keys::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("support") && err.contains("vad.onset_ms"),
            "{err}"
        );
    }
}
