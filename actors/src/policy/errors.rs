//! What is wrong with a policy file: every problem, with its field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a policy file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the file (`vad.onset_ms`, `llm.openai.model`).
    pub field: String,
    pub reason: String,
    /// The line (from 1) where the field, or its nearest table present in
    /// the file, is written; `None` for a default the file does not mention.
    pub line: Option<usize>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)?;
        match self.line {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
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
                line: None,
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
                line: None,
            });
        }
    }
}

/// The line (from 1) of the field at `path` (`vad.onset_ms`) in `text`: the
/// line of its key, or of the deepest table on the path the file has; `None`
/// when the file names none of it (the value is a default).
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    line_in(text, doc.get_ref(), path)
}

/// Fills in each error's line, parsing `text` once for all of them.
pub fn set_lines(text: &str, errors: &mut [FieldError]) {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return;
    };
    for e in errors {
        e.line = line_in(text, doc.get_ref(), &e.field);
    }
}

fn line_in(text: &str, doc: &toml::de::DeTable<'_>, path: &str) -> Option<usize> {
    let mut table = doc;
    let mut at = None;
    for segment in path.split('.') {
        let Some((key, value)) = table.get_key_value(segment) else {
            break;
        };
        at = Some(key.span().start);
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    let before = text.get(..at?)?;
    Some(before.bytes().filter(|b| *b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_found_on_its_line_or_on_its_tables() {
        let text = "# a comment\nname = \"x\"\n[vad]\nonset_ms = 0\n\n[llm.groq]\nmodel = \"m\"\n[sim.tts]\nreal_time_factor = -2.0\n";
        assert_eq!(line_of(text, "name"), Some(2));
        assert_eq!(line_of(text, "vad.onset_ms"), Some(4));
        // Not written: the table it would be in.
        assert_eq!(line_of(text, "vad.endpointing_ms"), Some(3));
        assert_eq!(line_of(text, "llm.groq.model"), Some(7));
        assert_eq!(line_of(text, "llm.groq.temperature"), Some(6));
        assert_eq!(line_of(text, "sim.tts.real_time_factor"), Some(9));
        assert_eq!(line_of(text, "timeouts.turn_budget_ms"), None);
        // Non-ASCII before the field does not shift the count.
        let hindi = "greeting = \"नमस्ते, आपका स्वागत है\"\n[vad]\nonset_ms = 0\n";
        assert_eq!(line_of(hindi, "vad.onset_ms"), Some(3));
        assert_eq!(line_of("not = [toml", "vad"), None);
    }
}
