//! What is wrong with a policy file: every problem, with its field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a policy file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the file (`vad.onset_ms`, `llm.openai.model`).
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The cause is in the message and not a `source`, so that printing the
    // error chain (`{:#}`) says it once.
    #[error("cannot read policy file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("policy file {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("policy file {origin} has {} error(s):\n{}", errors.len(), list(errors))]
    Invalid {
        origin: String,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects a section's problems as it checks itself.
#[derive(Default)]
pub struct Checks(pub(crate) Vec<FieldError>);

impl Checks {
    /// Records `reason` against `field` unless `ok`.
    pub fn that(&mut self, ok: bool, field: &str, reason: String) {
        if !ok {
            self.0.push(FieldError {
                field: field.to_owned(),
                reason,
            });
        }
    }

    /// `field` must be within `lo..=hi`.
    pub fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, field: &str, v: T, lo: T, hi: T) {
        self.that(
            lo <= v && v <= hi,
            field,
            format!("{v} is outside {lo}..={hi}"),
        );
    }

    /// A vendor's own problems (fields relative to `section`).
    pub fn section(&mut self, section: &str, problems: Vec<(&'static str, String)>) {
        for (field, reason) in problems {
            self.0.push(FieldError {
                field: format!("{section}.{field}"),
                reason,
            });
        }
    }
}
