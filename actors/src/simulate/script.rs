//! Simulation scripts: plain text, one caller line per line.
//!
//! ```text
//! # a comment; blank lines are skipped
//! I'd like to invest in mutual funds     <- the caller says this
//! dtmf 1                                 <- presses 1 (`dtmf 12#` presses three keys)
//! silence 8s                             <- says nothing for 8 s (`500ms`, `1.5s`)
//! mumble                                 <- speaks, but no words are heard
//! What are your plans? &                  <- says this; the next line comes 1 s
//!                                            into the bot's answer (talking over it)
//! say dtmf is a word                     <- `say` forces a caller line
//! ```

use std::time::Duration;

/// One thing the caller does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Say(String),
    Dtmf(char),
    Silence(Duration),
    /// Speech the STT makes no words of.
    Mumble,
    /// Says this, and the next step starts once the bot's answer has
    /// played for a second (so it talks over the bot).
    SayThenOverlap(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ScriptError {
    pub line: usize,
    pub reason: String,
}

/// Longest silence a script may ask for.
const MAX_SILENCE: Duration = Duration::from_secs(600);

/// The steps of a script, or its first bad line.
pub fn parse(text: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |reason: String| ScriptError {
            line: n + 1,
            reason,
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "dtmf" => {
                if rest.is_empty() {
                    return Err(bad("dtmf needs keys: 0-9, *, #, A-D".into()));
                }
                for key in rest.chars().filter(|c| !c.is_whitespace()) {
                    if !matches!(key, '0'..='9' | '*' | '#' | 'A'..='D') {
                        return Err(bad(format!("{key:?} is not a key: 0-9, *, #, A-D")));
                    }
                    steps.push(Step::Dtmf(key));
                }
            }
            "silence" => steps.push(Step::Silence(duration(rest).map_err(bad)?)),
            "mumble" if rest.is_empty() => steps.push(Step::Mumble),
            "say" if !rest.is_empty() => steps.push(Step::Say(rest.to_owned())),
            _ => match line.strip_suffix(" &") {
                Some(text) if !text.trim().is_empty() => {
                    steps.push(Step::SayThenOverlap(text.trim().to_owned()));
                }
                _ => steps.push(Step::Say(line.to_owned())),
            },
        }
    }
    Ok(steps)
}

/// `8s`, `1.5s`, `500ms`.
fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 8s, 1.5s or 500ms");
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(bad());
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad());
    }
    // Checked before converting: a long run of digits is a finite f64 far
    // beyond what a Duration holds (found by the fuzzer).
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if d <= MAX_SILENCE => Ok(d),
        _ => Err(format!("{text:?} is over {} s", MAX_SILENCE.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keys_and_silences() {
        let steps = parse(
            "# opening\n\nHello, I want a loan\ndtmf 1#\nsilence 8s\nsilence 250ms\nsay dtmf please\nहाँ, मुझे दिलचस्पी है\nTell me more &\nmumble\n",
        )
        .unwrap();
        assert_eq!(
            steps,
            [
                Step::Say("Hello, I want a loan".into()),
                Step::Dtmf('1'),
                Step::Dtmf('#'),
                Step::Silence(Duration::from_secs(8)),
                Step::Silence(Duration::from_millis(250)),
                Step::Say("dtmf please".into()),
                Step::Say("हाँ, मुझे दिलचस्पी है".into()),
                Step::SayThenOverlap("Tell me more".into()),
                Step::Mumble,
            ]
        );
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, line, reason) in [
            ("hi\ndtmf\n", 2, "needs keys"),
            ("dtmf 1x\n", 1, "'x' is not a key"),
            ("\n\nsilence forever\n", 3, "not a duration"),
            ("silence -2s\n", 1, "not a duration"),
            ("silence 2h\n", 1, "not a duration"),
            ("silence 9999s\n", 1, "is over"),
            (&format!("silence {}s\n", "8".repeat(90)), 1, "is over"),
            ("silence ५s\n", 1, "not a duration"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.reason.contains(reason), "{text:?}: {err}");
        }
    }
}
