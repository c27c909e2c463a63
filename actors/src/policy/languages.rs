//! `language` and `[languages.CODE]`: what a policy says in each language it
//! speaks — the STT language, the TTS voice per vendor, the greeting and the
//! fixed lines. The language a call starts in is applied over the policy's
//! top-level fields once, when the file is loaded, so a call reads its
//! lines and provider settings from one place whatever the language.
//! (Switching mid-call comes with the rules.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Checks, PolicyFile};

/// TTS vendors with a voice to choose.
const VOICED: &[&str] = &["elevenlabs", "openai"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LanguageSettings {
    /// What the STT listens for (Deepgram's and OpenAI's `language`), e.g.
    /// `en-IN`, `hi`; empty: the `[stt.*]` setting.
    pub stt_language: String,
    /// The voice per TTS vendor (`elevenlabs` voice id, `openai` voice
    /// name); a vendor not named keeps its `[tts.*]` voice.
    pub voices: BTreeMap<String, String>,
    /// The lines in this language; empty: the top-level line.
    pub greeting: String,
    pub goodbye: String,
    pub apology: String,
    pub fallback_line: String,
    /// The profanity rule's lines in this language (`[rules.profanity]`).
    pub profanity_warning: String,
    pub profanity_goodbye: String,
    /// The do-not-call rule's goodbye in this language.
    pub do_not_call_goodbye: String,
    /// The consent rule's lines in this language (`[rules.consent]`).
    pub consent_prompt: String,
    pub consent_reask: String,
    pub consent_accepted: String,
    pub consent_declined: String,
    pub consent_unclear: String,
    /// The idle rule's lines in this language (`[rules.idle]`).
    pub idle_reprompt: String,
    pub idle_goodbye: String,
    /// `[rules.call_length]`'s closing line in this language.
    pub call_length_closing: String,
    /// `[rules.escalation]`'s line in this language.
    pub escalation_line: String,
    /// `[rules.claims]`'s safe line in this language.
    pub claims_safe_line: String,
    /// `[rules.menu]`'s prompt in this language.
    pub menu_prompt: String,
    /// `recording_notice` in this language.
    pub recording_notice: String,
}

/// A BCP 47 tag as policies use them: `en`, `en-IN`, `hi`, `hi-Latn`.
fn is_tag(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub(super) fn validate(
    language: &str,
    languages: &BTreeMap<String, LanguageSettings>,
    check: &mut Checks,
) {
    if languages.is_empty() {
        check.that(
            language.is_empty() || is_tag(language),
            "language",
            format!("{language:?} is not a language tag like en, en-IN, hi or hi-Latn"),
        );
        return;
    }
    check.that(
        languages.contains_key(language),
        "language",
        format!(
            "{language:?} must be one of the [languages] sections: {:?}",
            languages.keys().collect::<Vec<_>>()
        ),
    );
    for (code, lang) in languages {
        let field = format!("languages.{code}");
        check.that(
            is_tag(code),
            &field,
            format!("{code:?} is not a language tag like en, en-IN, hi or hi-Latn"),
        );
        check.that(
            lang.stt_language.is_empty()
                || is_tag(&lang.stt_language)
                || lang.stt_language == "multi",
            &format!("{field}.stt_language"),
            format!(
                "{:?} is not a language tag (or \"multi\")",
                lang.stt_language
            ),
        );
        for (vendor, voice) in &lang.voices {
            check.that(
                VOICED.contains(&vendor.as_str()),
                &format!("{field}.voices"),
                format!("{vendor:?}: voices are set for {VOICED:?}"),
            );
            check.that(
                !voice.trim().is_empty(),
                &format!("{field}.voices.{vendor}"),
                "must not be empty".into(),
            );
        }
    }
}

impl PolicyFile {
    /// This policy as spoken in `code`: its lines, STT language and voices
    /// over the top-level ones. Unknown codes change nothing.
    pub fn in_language(&self, code: &str) -> PolicyFile {
        let mut p = self.clone();
        let Some(lang) = self.languages.get(code) else {
            return p;
        };
        p.language = code.to_owned();
        for (line, text) in [
            (&mut p.greeting, &lang.greeting),
            (&mut p.goodbye, &lang.goodbye),
            (&mut p.apology, &lang.apology),
            (&mut p.fallback_line, &lang.fallback_line),
            (&mut p.rules.profanity.warning, &lang.profanity_warning),
            (&mut p.rules.profanity.goodbye, &lang.profanity_goodbye),
            (&mut p.rules.do_not_call.goodbye, &lang.do_not_call_goodbye),
            (&mut p.rules.consent.prompt, &lang.consent_prompt),
            (&mut p.rules.consent.reask, &lang.consent_reask),
            (&mut p.rules.consent.accepted, &lang.consent_accepted),
            (&mut p.rules.consent.declined, &lang.consent_declined),
            (&mut p.rules.consent.unclear, &lang.consent_unclear),
            (&mut p.rules.idle.reprompt, &lang.idle_reprompt),
            (&mut p.rules.idle.goodbye, &lang.idle_goodbye),
            (&mut p.rules.call_length.closing, &lang.call_length_closing),
            (&mut p.rules.escalation.line, &lang.escalation_line),
            (&mut p.rules.claims.safe_line, &lang.claims_safe_line),
            (&mut p.rules.menu.prompt, &lang.menu_prompt),
            (&mut p.recording_notice, &lang.recording_notice),
        ] {
            if !text.trim().is_empty() {
                line.clone_from(text);
            }
        }
        if !lang.stt_language.is_empty() {
            p.stt.deepgram.language.clone_from(&lang.stt_language);
            // OpenAI takes one ISO 639-1 code, or none to detect it.
            p.stt.openai.language = match lang.stt_language.as_str() {
                "multi" => String::new(),
                tag => tag.split('-').next().unwrap_or(tag).to_owned(),
            };
        }
        if let Some(v) = lang.voices.get("elevenlabs") {
            p.tts.elevenlabs.voice_id.clone_from(v);
        }
        if let Some(v) = lang.voices.get("openai") {
            p.tts.openai.voice.clone_from(v);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{PolicyError, PolicyFile};

    const TWO: &str = r#"
language = "hi"
[languages.en]
stt_language = "en-IN"
greeting = "Hello, this is Asha."
voices = { elevenlabs = "voice-en" }
[languages.hi]
stt_language = "hi"
greeting = "नमस्ते, मैं आशा बोल रही हूँ।"
goodbye = "धन्यवाद, नमस्ते।"
profanity_goodbye = "माफ़ कीजिए, मैं यह कॉल समाप्त कर रही हूँ।"
voices = { elevenlabs = "voice-hi", openai = "shimmer" }
"#;

    #[test]
    fn the_start_language_is_applied_over_the_top_level_fields() {
        let p = PolicyFile::parse(TWO, "t", "t").unwrap();
        assert_eq!(p.greeting, "नमस्ते, मैं आशा बोल रही हूँ।");
        assert_eq!(p.goodbye, "धन्यवाद, नमस्ते।");
        assert_eq!(
            p.rules.profanity.goodbye,
            "माफ़ कीजिए, मैं यह कॉल समाप्त कर रही हूँ।"
        );
        // Not given in this language: the rule's own line.
        assert_eq!(
            p.rules.profanity.warning,
            PolicyFile::default().rules.profanity.warning
        );
        assert_eq!(p.stt.deepgram.language, "hi");
        assert_eq!(p.stt.openai.language, "hi");
        assert_eq!(p.tts.elevenlabs.voice_id, "voice-hi");
        assert_eq!(p.tts.openai.voice, "shimmer");
        // A line the language leaves out keeps the top-level one.
        assert_eq!(p.apology, PolicyFile::default().apology);
        let en = p.in_language("en");
        assert_eq!(en.greeting, "Hello, this is Asha.");
        assert_eq!(en.stt.deepgram.language, "en-IN");
        assert_eq!(en.tts.elevenlabs.voice_id, "voice-en");
    }

    #[test]
    fn bad_languages_are_reported_with_their_fields() {
        let bad = TWO
            .replace("stt_language = \"hi\"", "stt_language = \"हिन्दी\"")
            .replace("\nlanguage = \"hi\"", "\nlanguage = \"fr\"")
            .replace("[languages.en]", "[languages.EN]")
            .replace("openai = \"shimmer\"", "polly = \"Aditi\"");
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(&bad, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "language",
                "languages.EN",
                "languages.hi.stt_language",
                "languages.hi.voices"
            ],
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| e.line.is_some()), "{errors:?}");
    }
}
