//! A rescan: every file is read; those whose text changed are parsed again
//! and applied (or refused with their errors, the old version staying
//! live); files that are gone retire their policy (never the default).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use hark_actors::{PolicyError, PolicyFile};

use super::{Catalog, Change, FileState, Live, POLICY_RELOADS, Policies};

impl Policies {
    /// The next catalog from `old` and the files on disk. `count`: record
    /// the changes in metrics (not at start).
    pub(super) fn scan(&self, old: &Catalog, count: bool) -> (Catalog, Vec<Change>) {
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
            // An empty file is one being written (an editor or `fs::write`
            // truncates first): it would parse as an all-default policy.
            // Keep what the file served until its text arrives.
            if count && text.trim().is_empty() {
                if let Some(before) = before {
                    next.files.insert(path, before);
                }
                continue;
            }
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
                    Ok((providers, notices)) => {
                        let name = policy.name.clone();
                        let version = policy.version.clone();
                        if let Some(old_name) = serving.as_ref().filter(|n| **n != name) {
                            // Renamed: the old name stops taking calls.
                            self.retire(&mut next, old_name);
                        }
                        if let Some(prev) = next.live.insert(
                            name.clone(),
                            Arc::new(Live {
                                languages: self.languages(&policy),
                                policy: Arc::new(policy),
                                providers,
                                file: Some(path.clone()),
                                notices,
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
