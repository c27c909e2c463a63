//! Real provider clients, through `hark serve`, against local fakes that
//! speak Deepgram's, OpenAI's and ElevenLabs' wire protocols — including the
//! faults users meet in practice.

use std::time::Duration;

use crate::fakes::openai::Reply;
use crate::fakes::{DEEPGRAM_KEY, ELEVENLABS_KEY, Fakes, Fault, OPENAI_KEY};
use crate::support::{GREETING, Hark, QUIET, speech};

const PIPELINE: &str = "deepgram+openai+elevenlabs";

async fn ready(hark: &Hark) -> serde_json::Value {
    for _ in 0..100 {
        let res = hark.http().get(hark.url("/readyz")).send().await.unwrap();
        let body: serde_json::Value = res.json().await.unwrap();
        if body["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] != "unknown")
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("providers never checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_runs_end_to_end_on_live_providers() {
    let fakes = Fakes::start().await;
    let hark = Hark::start_live(&fakes, &[]);
    let body = ready(&hark).await;
    assert_eq!(body["status"], "ready", "{body}");
    for p in body["providers"].as_array().unwrap() {
        assert_eq!(p["state"], "healthy", "{p}");
        assert_eq!(p["simulated"], false, "{p}");
    }

    let caller = hark.caller(100).await;
    assert!(caller.wait_idle(QUIET, GREETING).await, "no greeting");
    assert_eq!(
        fakes.elevenlabs.sentences(),
        ["Hello.", "How can I help you?"],
        "the greeting is spoken sentence by sentence"
    );
    let spoken = caller.say(speech("order")).await.unwrap();
    let first = caller
        .wait_media_since(spoken.ended, Duration::from_secs(5))
        .await
        .expect("no reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);

    // Deepgram got the documented live parameters and transcribed the utterance.
    let dg = &fakes.deepgram.shared;
    assert_eq!(fakes.deepgram.count(&dg.connections), 1);
    let q = dg.queries.lock().unwrap()[0].clone();
    for (k, v) in [
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("vad_events", "true"),
        ("model", "nova-3"),
    ] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k} in {q:?}");
    }
    assert!(q.contains_key("utterance_end_ms") && q.contains_key("endpointing"));
    let finals = fakes.deepgram.finals();
    assert!(!finals.is_empty());
    let heard = finals.join(" ");

    // The LLM got those words, streamed, with the policy's tools.
    assert_eq!(fakes.openai.heard(), [heard.clone()]);
    let req = &fakes.openai.chat_requests()[0];
    assert_eq!(req["model"], "gpt-4o-mini");
    assert_eq!(req["stream"], true);
    let tools: Vec<&str> = req["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["end_call", "record_outcome"]);

    // The reply was spoken by ElevenLabs, first sentence first.
    let sentences = fakes.elevenlabs.sentences();
    assert_eq!(
        &sentences[2..],
        [
            format!("You said {heard}."),
            "Is there anything else I can do?".to_owned()
        ]
    );
    let st = caller.state();
    assert!(st.audio_since(spoken.ended) > Duration::from_secs(2));
    assert!(first > spoken.ended);
    drop(st);

    // Per-stage latency, labelled by provider.
    let m = hark.metrics().await;
    let by = |series: &str, provider: &str| m.sum(series, &[("provider", provider)]);
    assert_eq!(by("hark_stt_final_seconds_count", "deepgram"), 1.0);
    assert_eq!(by("hark_llm_first_token_seconds_count", "openai"), 1.0);
    assert_eq!(by("hark_tts_first_byte_seconds_count", "elevenlabs"), 4.0);
    assert_eq!(by("hark_turn_response_seconds_count", PIPELINE), 1.0);
    assert!(m.has("hark_stt_final_seconds_bucket{provider=\"deepgram\",le=\"0.1\"}"));
    assert_eq!(m.sum("hark_provider_errors_total", &[]), 0.0);
    assert_eq!(m.sum("hark_provider_up", &[]), 5.0);

    // Secrets never reach the logs.
    let logs = hark.logs();
    for key in [DEEPGRAM_KEY, OPENAI_KEY, ELEVENLABS_KEY] {
        assert!(!logs.contains(key), "{key} in logs");
    }
}
