//! What providers send back is outside input: ElevenLabs stream messages,
//! OpenAI transcription bodies, and the LLM's tool-call arguments must give
//! a value or an error, never a panic; the LLM's text, streamed in any
//! pieces, is cut into sentences without a panic or a lost word.
#![no_main]

use std::sync::OnceLock;

use hark_actors::PolicyFile;
use hark_actors::providers::ToolCall;
use hark_actors::providers::stt::openai::text_of;
use hark_actors::providers::tts::elevenlabs::parse;
use hark_actors::sentences::SentenceSplitter;
use hark_actors::tools::Tools;
use libfuzzer_sys::fuzz_target;

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let policy = PolicyFile::parse(
            "[tools]\nend_call = true\ntransfer_targets = [\"sales\"]\n[tools.outcome]\ninterested = \"boolean\"\nplan = [\"basic\", \"pro\"]\n",
            "fuzz",
            "fuzz",
        )
        .expect("fuzz policy");
        Tools::from_policy(&policy)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = text_of(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse(text);
    // The text streamed in pieces of up to 7 characters, as tokens arrive.
    let mut splitter = SentenceSplitter::default();
    let mut said = String::new();
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(7) {
        let piece: String = piece.iter().collect();
        said.extend(splitter.push(&piece));
    }
    said.extend(splitter.finish());
    let words = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<String>();
    assert_eq!(words(&said), words(text));
    for name in ["end_call", "transfer_call", "record_outcome", "other"] {
        let outcome = tools().run(&ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: text.into(),
        });
        // Whatever the model sent, it gets JSON back.
        assert!(serde_json::from_str::<serde_json::Value>(&outcome.result).is_ok());
    }
});
