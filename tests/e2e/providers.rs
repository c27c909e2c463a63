//! Real provider clients, through `hark serve`, against local fakes that
//! speak Deepgram's, OpenAI's and ElevenLabs' wire protocols — including the
//! faults users meet in practice.

use std::time::Duration;

use crate::fakes::openai::Reply;
use crate::fakes::{DEEPGRAM_KEY, ELEVENLABS_KEY, Fakes, Fault, OPENAI_KEY};
use crate::support::{GREETING, Hark, QUIET, doctor, repo_path, speech};

const PIPELINE: &str = "deepgram+openai+elevenlabs";

/// What the fakes' recognizer makes of a fixture: its speech, in ms.
fn speech_ms(name: &str) -> u64 {
    let samples: Vec<i16> = speech(name)
        .iter()
        .map(|&b| hark_actors::ulaw::decode(b))
        .collect();
    samples
        .chunks(crate::fakes::FRAME)
        .filter(|f| crate::fakes::is_speech(f))
        .count() as u64
        * 20
}

/// Asserts the model heard the whole of `fixture`, once, in one turn:
/// the fakes' transcript is its speech length (to a frame or two, for
/// where the VAD's pre-roll and the fixture's frames meet).
fn assert_heard_whole(fakes: &Fakes, fixture: &str) {
    let heard = fakes.openai.heard();
    assert_eq!(heard.len(), 1, "{heard:?}");
    let ms: i64 = heard[0]
        .strip_suffix(" milliseconds of speech")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{heard:?}"));
    let expected = speech_ms(fixture) as i64;
    assert!(
        (ms - expected).abs() <= 60,
        "heard {ms} ms of {expected} ms of speech"
    );
}

/// `tests/policies/live.toml` with some text replaced, in a temporary file.
pub(crate) fn live_policy(name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(repo_path("tests/policies/live.toml")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in live.toml");
        text = text.replacen(from, to, 1);
    }
    let path = std::env::temp_dir().join(format!("hark-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Says `fixture` and waits for the whole reply.
pub(crate) async fn turn(
    hark: &Hark,
    caller: &hark_loadtest::Caller,
    fixture: &str,
) -> tokio::time::Instant {
    let spoken = caller.say(speech(fixture)).await.unwrap();
    caller
        .wait_media_since(spoken.ended, Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("no reply to {fixture}; hark's log:\n{}", hark.logs()));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    spoken.ended
}

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
    let heard = crate::fakes::transcript(speech_ms("order"));
    assert_eq!(fakes.deepgram.finals(), std::slice::from_ref(&heard));

    // The LLM got those words, streamed, with the policy's tools.
    assert_eq!(fakes.openai.heard(), std::slice::from_ref(&heard));
    let req = &fakes.openai.chat_requests()[0];
    assert_eq!(req["model"], "gpt-4o-mini");
    // The system prompt is the policy's template, filled from [prompt].
    assert_eq!(req["messages"][0]["role"], "system");
    assert_eq!(
        req["messages"][0]["content"],
        "You are the Hark test agent, speaking आसान हिंदी when asked. Your goals:\n- answer in one sentence\n- offer more help"
    );
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
    assert!(caller.state().audio_since(spoken.ended) > Duration::from_secs(2));
    assert!(first > spoken.ended);

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
    for (series, provider) in [
        ("hark_stt_final_seconds", "deepgram"),
        ("hark_llm_first_token_seconds", "openai"),
        ("hark_tts_first_byte_seconds", "elevenlabs"),
        ("hark_turn_response_seconds", PIPELINE),
    ] {
        let sum = by(&format!("{series}_sum"), provider);
        let count = by(&format!("{series}_count"), provider);
        eprintln!(
            "{series}{{provider={provider:?}}}: mean {:.1} ms over {count}",
            sum / count * 1000.0
        );
    }

    // Secrets never reach the logs.
    let logs = hark.logs();
    for key in [DEEPGRAM_KEY, OPENAI_KEY, ELEVENLABS_KEY] {
        assert!(!logs.contains(key), "{key} in logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stt_socket_is_reopened_and_the_utterance_replayed() {
    let fakes = Fakes::start().await;
    let dg = &fakes.deepgram.shared;
    // The first socket is cut after 1 s of audio, mid-utterance; the second
    // is closed by the server with 1011 after 1 s; the third works.
    dg.faults.push(Fault::DropAfter(1000));
    dg.faults.push(Fault::Error);
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(101).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "order").await;
    assert_eq!(fakes.deepgram.count(&dg.connections), 3);
    // Not a word lost: the model heard the whole utterance, once.
    assert_heard_whole(&fakes, "order");
    assert_eq!(
        fakes
            .openai
            .shared
            .transcriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let m = hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_provider_reconnects_total",
            &[("provider", "deepgram")]
        ),
        2.0
    );
    assert_eq!(
        m.sum("hark_provider_errors_total", &[("provider", "deepgram")]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_the_stt_socket_open_while_the_caller_is_silent() {
    let fakes = Fakes::start().await;
    let dg = &fakes.deepgram.shared;
    *dg.idle_timeout.lock().unwrap() = Duration::from_secs(4);
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(102).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    // Twice the idle timeout of silence (the caller streams silence).
    tokio::time::sleep(Duration::from_secs(8)).await;
    turn(&hark, &caller, "yes").await;
    assert_eq!(
        fakes.deepgram.count(&dg.connections),
        1,
        "never reconnected"
    );
    assert!(fakes.deepgram.count(&dg.keepalives) >= 2);
    assert_eq!(fakes.openai.heard(), fakes.deepgram.finals());
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_provider_reconnects_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_stt_stream_is_down_utterances_go_to_the_batch_fallback() {
    let fakes = Fakes::start().await;
    // Every connection attempt is refused.
    fakes
        .deepgram
        .shared
        .faults
        .always(Some(Fault::Status(503)));
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(103).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "order").await;
    assert_eq!(
        fakes
            .openai
            .shared
            .transcriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_heard_whole(&fakes, "order");
    let m = hark.metrics().await;
    assert_eq!(
        m.sum("hark_stt_final_seconds_count", &[("provider", "openai")]),
        1.0
    );
    assert!(m.sum("hark_provider_errors_total", &[("provider", "deepgram")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stt_stream_times_out_to_the_batch_fallback() {
    let fakes = Fakes::start().await;
    // The socket takes audio and never answers.
    fakes.deepgram.shared.faults.push(Fault::Stall);
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(104).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "order").await;
    assert_heard_whole(&fakes, "order");
    assert_eq!(
        fakes
            .openai
            .shared
            .transcriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// The fallback transcriber hangs: past `stt_fallback_ms` the utterance is
/// given up, the caller is asked to say it again, and the next one is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_fallback_transcription_times_out_and_the_caller_is_asked_again() {
    let fakes = Fakes::start().await;
    fakes
        .deepgram
        .shared
        .faults
        .always(Some(Fault::Status(503)));
    fakes.openai.shared.transcription_faults.push(Fault::Stall);
    let policy = live_policy(
        "fallback-timeout",
        &[(
            "stt_final_ms = 1500",
            "stt_final_ms = 1500\nstt_fallback_ms = 1000",
        )],
    );
    let hark = Hark::start_live_with(&fakes, &policy, &[]);
    let caller = hark.caller(120).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let spoken = caller.say(speech("order")).await.unwrap();
    let answered = caller
        .wait_media_since(spoken.ended, Duration::from_secs(4))
        .await
        .unwrap_or_else(|| panic!("the caller was left waiting:\n{}", hark.logs()));
    // Endpointing (500 ms) + the fallback's 1 s, not forever.
    assert!(answered - spoken.ended < Duration::from_secs(3));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    let said = fakes.elevenlabs.sentences();
    assert_eq!(
        &said[2..],
        [
            "Sorry, I am having trouble right now.",
            "Please say that again."
        ],
        "{said:?}"
    );
    assert!(
        fakes.openai.chat_requests().is_empty(),
        "nothing was heard to answer"
    );
    let m = hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_provider_errors_total",
            &[("provider", "openai"), ("kind", "timeout")]
        ),
        1.0
    );
    // The transcriber is back: the next utterance is heard whole.
    turn(&hark, &caller, "order").await;
    assert_heard_whole(&fakes, "order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_rate_limit_and_broken_streams_are_retried_within_the_turn() {
    let fakes = Fakes::start().await;
    let chat = &fakes.openai.shared.chat_faults;
    chat.push(Fault::Status(429)); // turn 1: 429, then the retry answers
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(105).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "order").await;
    assert_eq!(fakes.openai.chat_requests().len(), 2);
    chat.push(Fault::Malformed); // turn 2: a chunk that is not JSON
    turn(&hark, &caller, "hours").await;
    assert_eq!(fakes.openai.chat_requests().len(), 4);
    chat.push(Fault::DropAfter(1)); // turn 3: cut before any text
    turn(&hark, &caller, "yes").await;
    assert_eq!(fakes.openai.chat_requests().len(), 6);
    // Every turn was answered by the model, not the fallback line.
    let said = fakes.elevenlabs.sentences();
    for heard in fakes.openai.heard() {
        assert!(said.contains(&format!("You said {heard}.")), "{said:?}");
    }
    assert_eq!(fakes.openai.heard().len(), 3);
    let m = hark.metrics().await;
    let kind = |k: &str| {
        m.sum(
            "hark_provider_errors_total",
            &[("provider", "openai"), ("kind", k)],
        )
    };
    assert_eq!(kind("rate_limited"), 1.0);
    assert_eq!(kind("protocol"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_server_errors_go_to_the_fallback_endpoint() {
    let fakes = Fakes::start().await;
    let backup = crate::fakes::openai::OpenAi::start("backup-key").await;
    fakes
        .openai
        .shared
        .chat_faults
        .always(Some(Fault::Status(500)));
    let policy = live_policy(
        "backup",
        &[
            ("llm = [\"openai\"]", "llm = [\"openai\", \"backup\"]"),
            (
                "[llm.openai]",
                "[llm.backup]\nmodel = \"gpt-4o-mini\"\n\n[llm.openai]",
            ),
        ],
    );
    let backup_url = format!("{}/v1", backup.url());
    let hark = Hark::start_live_with(
        &fakes,
        &policy,
        &[
            (
                "HARK_PROVIDERS__OPENAI_COMPATIBLE__BACKUP__BASE_URL",
                &backup_url,
            ),
            (
                "HARK_PROVIDERS__OPENAI_COMPATIBLE__BACKUP__API_KEY_ENV",
                "BACKUP_LLM_KEY",
            ),
            ("BACKUP_LLM_KEY", "backup-key"),
        ],
    );
    let caller = hark.caller(106).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "order").await;
    assert_eq!(
        fakes.openai.chat_requests().len(),
        2,
        "first provider and its retry"
    );
    assert_eq!(backup.chat_requests().len(), 1);
    let heard = &fakes.openai.heard()[0];
    assert!(
        fakes
            .elevenlabs
            .sentences()
            .contains(&format!("You said {heard}."))
    );
    let m = hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_provider_errors_total",
            &[("provider", "openai"), ("kind", "server_error")]
        ),
        2.0
    );
    assert_eq!(
        m.sum(
            "hark_llm_first_token_seconds_count",
            &[("provider", "backup")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_llm_attempt_fails_the_caller_hears_the_fallback_line() {
    let fakes = Fakes::start().await;
    // Slower than the policy's 1 s first-token timeout, every time.
    fakes
        .openai
        .shared
        .chat_faults
        .always(Some(Fault::Delay(Duration::from_secs(3))));
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(107).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let ended = turn(&hark, &caller, "order").await;
    let said = fakes.elevenlabs.sentences();
    assert_eq!(
        &said[2..],
        ["Sorry, I am having trouble right now. Please say that again."]
    );
    assert!(caller.state().audio_since(ended) > Duration::from_secs(1));
    let m = hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_provider_errors_total",
            &[("provider", "openai"), ("kind", "timeout")]
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tts_error_or_stall_moves_that_sentence_to_the_fallback_voice() {
    let fakes = Fakes::start().await;
    let el = &fakes.elevenlabs.shared;
    el.faults.push(Fault::Error); // "Hello."
    el.faults.push(Fault::Stall); // "How can I help you?"
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(108).await;
    // A stalled sentence costs the first-byte timeout (0.7 s) of silence.
    let spoken = || fakes.openai.shared.spoken.lock().unwrap().clone();
    for _ in 0..200 {
        if spoken().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spoken(), ["Hello.", "How can I help you?"]);
    let greeting_ms =
        crate::fakes::speech_len("Hello.") + crate::fakes::speech_len("How can I help you?");
    let whole = 8 * greeting_ms * 9 / 10;
    let played = caller
        .wait_until(GREETING, |st| st.media_bytes >= whole)
        .await;
    assert!(
        played,
        "the whole greeting played: {} of {whole} bytes",
        caller.state().media_bytes
    );
    assert!(caller.wait_idle(QUIET, GREETING).await);
    // The next sentence goes to ElevenLabs again.
    turn(&hark, &caller, "yes").await;
    assert_eq!(fakes.openai.shared.spoken.lock().unwrap().len(), 2);
    let m = hark.metrics().await;
    let kind = |k: &str| {
        m.sum(
            "hark_provider_errors_total",
            &[("provider", "elevenlabs"), ("kind", k)],
        )
    };
    assert_eq!(kind("protocol"), 1.0);
    assert_eq!(kind("timeout"), 1.0);
    assert!(
        m.sum(
            "hark_tts_first_byte_seconds_count",
            &[("provider", "openai")]
        ) >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_cancels_live_provider_streams_and_the_model_knows() {
    let fakes = Fakes::start().await;
    fakes.openai.reply(Reply::Text(
        "Let me tell you about our plans. The basic plan costs ten dollars a month. \
         The pro plan costs twenty dollars a month and includes support. \
         Both plans can be cancelled at any time. Would you like to hear more?"
            .into(),
    ));
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(109).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let asked = caller.say(speech("order")).await.unwrap();
    caller
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("no reply");
    tokio::time::sleep(Duration::from_millis(600)).await;
    turn(&hark, &caller, "interrupt").await;
    let st = caller.state();
    assert_eq!(st.clears.len(), 1, "one barge-in");
    assert_eq!(
        st.stale_frames, 0,
        "no media of the cancelled turn after clear"
    );
    drop(st);
    // The next request tells the model its reply was cut off.
    let last = fakes.openai.chat_requests().last().cloned().unwrap();
    let assistant = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .cloned()
        .unwrap();
    let text = assistant["content"].as_str().unwrap();
    assert!(text.ends_with("[interrupted by the caller]"), "{text}");
    assert!(!text.contains("Would you like to hear more?"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_records_outcomes_and_ends_the_call_with_tools() {
    let fakes = Fakes::start().await;
    // Turn 1: malformed arguments, then valid ones after the error comes back.
    fakes.openai.reply(Reply::Tool {
        text: String::new(),
        name: "record_outcome".into(),
        arguments: r#"{"plan": "gold""#.into(),
    });
    fakes.openai.reply(Reply::Tool {
        text: String::new(),
        name: "record_outcome".into(),
        arguments: r#"{"interested": true, "plan": "pro"}"#.into(),
    });
    let hark = Hark::start_live(&fakes, &[]);
    let caller = hark.caller(110).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "yes").await;
    let requests = fakes.openai.chat_requests();
    assert_eq!(requests.len(), 3, "bad call, good call, final answer");
    let tool_result = |r: &serde_json::Value| {
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert!(
        tool_result(&requests[1]).contains("error"),
        "{}",
        tool_result(&requests[1])
    );
    assert!(
        !tool_result(&requests[2]).contains("error"),
        "{}",
        tool_result(&requests[2])
    );
    assert!(
        fakes
            .elevenlabs
            .sentences()
            .contains(&"All done.".to_owned())
    );

    // Turn 2: the model says goodbye and hangs up.
    fakes.openai.reply(Reply::Tool {
        text: "Thanks for calling, goodbye.".into(),
        name: "end_call".into(),
        arguments: r#"{"reason": "caller is done"}"#.into(),
    });
    caller.say(speech("thanks")).await.unwrap();
    let closed = caller.wait_closed(Duration::from_secs(20)).await;
    assert!(closed.is_some(), "the bot ended the call");
    assert!(
        fakes
            .elevenlabs
            .sentences()
            .contains(&"Thanks for calling, goodbye.".to_owned())
    );
    let m = hark.metrics().await;
    let tool = |t: &str, o: &str| m.sum("hark_tool_calls_total", &[("tool", t), ("outcome", o)]);
    assert_eq!(tool("record_outcome", "ok"), 1.0);
    assert_eq!(tool("end_call", "ok"), 1.0);
    assert_eq!(tool("record_outcome", "ok") + tool("end_call", "ok"), 2.0);
    assert!(m.sum("hark_tool_calls_total", &[("tool", "record_outcome")]) == 2.0);
    assert_eq!(m.get("hark_calls_ended_total{reason=\"bot_ended\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_at_start_up_does_not_stop_serve() {
    let fakes = Fakes::start().await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let hark = Hark::start_live(&fakes, &[("HARK_PROVIDERS__ELEVENLABS__BASE_URL", &dead)]);
    let body = ready(&hark).await;
    let el = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "elevenlabs")
        .cloned()
        .unwrap();
    assert_eq!(el["state"], "unhealthy", "{body}");
    assert_eq!(el["kind"], "connect", "{body}");
    // OpenAI still speaks: the node is ready, and calls work.
    assert_eq!(body["status"], "ready", "{body}");
    assert!(hark.logs().contains("provider unhealthy"));
    let caller = hark.caller(111).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    turn(&hark, &caller, "yes").await;
    assert!(fakes.openai.shared.spoken.lock().unwrap().len() >= 3);
    let m = hark.metrics().await;
    assert_eq!(
        m.get("hark_provider_up{role=\"tts\",provider=\"elevenlabs\"}"),
        0.0
    );

    // With no other voice, the node is not ready, and says which role.
    let policy = live_policy(
        "tts-only-elevenlabs",
        &[(
            "tts = [\"elevenlabs\", \"openai\"]",
            "tts = [\"elevenlabs\"]",
        )],
    );
    let lone = Hark::start_live_with(
        &fakes,
        &policy,
        &[("HARK_PROVIDERS__ELEVENLABS__BASE_URL", &dead)],
    );
    let res = loop {
        let res = lone.http().get(lone.url("/readyz")).send().await.unwrap();
        if res.status() != 200 {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["unready_roles"], serde_json::json!(["tts"]));
}

/// The row of `provider` in `role` of a doctor table.
fn row<'a>(table: &'a str, role: &str, provider: &str) -> &'a str {
    table
        .lines()
        .find(|l| {
            let mut cols = l.split_whitespace();
            cols.next() == Some(role) && cols.next() == Some(provider)
        })
        .unwrap_or_else(|| panic!("no {role} {provider} row in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_when_every_provider_and_twilio_check_out() {
    let fakes = Fakes::start().await;
    let live = repo_path("tests/policies/live.toml");
    let (code, out) = doctor(&fakes, &live, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        row(&out, "stt", "deepgram").contains("ok         model nova-3 available"),
        "{out}"
    );
    assert!(
        row(&out, "llm", "openai").contains("model gpt-4o-mini available"),
        "{out}"
    );
    assert!(
        row(&out, "tts", "elevenlabs").contains("voice Rachel"),
        "{out}"
    );
    assert!(row(&out, "twilio", "account").contains("active"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");
    for key in [
        DEEPGRAM_KEY,
        OPENAI_KEY,
        ELEVENLABS_KEY,
        crate::fakes::TWILIO_TOKEN,
    ] {
        assert!(!out.contains(key), "{key} printed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_bad_key_missing_model_or_voice_and_unreachable_host() {
    let fakes = Fakes::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let live = repo_path("tests/policies/live.toml");
    let (code, out) = doctor(
        &fakes,
        &live,
        &[
            ("OPENAI_API_KEY", "sk-wrong"),
            ("HARK_PROVIDERS__DEEPGRAM__BASE_URL", &dead),
            ("TWILIO_AUTH_TOKEN", "wrong"),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        row(&out, "llm", "openai").contains("FAILED     authentication failed"),
        "{out}"
    );
    assert!(
        row(&out, "stt", "deepgram").contains("FAILED     cannot connect"),
        "{out}"
    );
    assert!(
        row(&out, "twilio", "account").contains("FAILED     authentication failed"),
        "{out}"
    );
    assert!(row(&out, "tts", "elevenlabs").contains("ok"), "{out}");
    assert!(out.contains("5 check(s) failed"), "{out}");

    let policy = live_policy(
        "doctor-missing",
        &[
            ("model = \"gpt-4o-mini\"", "model = \"gpt-9-nano\""),
            (
                "voice_id = \"21m00Tcm4TlvDq8ikWAM\"",
                "voice_id = \"no-such-voice\"",
            ),
            ("model = \"nova-3\"", "model = \"nova-9\""),
        ],
    );
    let (code, out) = doctor(&fakes, &policy, &[("ELEVENLABS_API_KEY", "")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        row(&out, "llm", "openai").contains("not found: model gpt-9-nano"),
        "{out}"
    );
    assert!(
        row(&out, "stt", "deepgram").contains("not found: model nova-9"),
        "{out}"
    );
    assert!(
        row(&out, "tts", "elevenlabs").contains("ELEVENLABS_API_KEY is not set"),
        "{out}"
    );
    let (_, out) = doctor(&fakes, &policy, &[]).await;
    assert!(
        row(&out, "tts", "elevenlabs").contains("not found: voice no-such-voice"),
        "{out}"
    );
}
