//! A caller's conversation: greeting, replies, barge-in, marks, DTMF, hang-up.

use std::time::Duration;

use crate::support::{GREETING, Hark, QUIET, speech};

#[tokio::test]
async fn greeting_audio_arrives_and_its_marks_are_echoed() {
    let hark = Hark::start(&[]);
    let caller = hark.caller(1).await;
    assert!(
        caller
            .wait_media_since(caller.connected_at(), Duration::from_secs(3))
            .await
            .is_some(),
        "no greeting"
    );
    assert!(
        caller.wait_idle(QUIET, GREETING).await,
        "greeting never ended"
    );
    let st = caller.state();
    // "Hello. How can I help you?" is ~1.3 s of audio at 60 ms per character.
    assert!(
        st.media_bytes >= 8 * 1000,
        "greeting too short: {} bytes",
        st.media_bytes
    );
    assert!(st.marks_received > 0);
    assert_eq!(st.marks_echoed, st.marks_received);
    assert!(st.clears.is_empty());
    assert_eq!(st.protocol_errors, 0, "{:?}", st.protocol_error_sample);
}

#[tokio::test]
async fn an_utterance_gets_a_spoken_reply() {
    let hark = Hark::start(&[]);
    let caller = hark.caller(2).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let spoken = caller.say(speech("order")).await.unwrap();
    let first = caller
        .wait_media_since(spoken.ended, Duration::from_secs(5))
        .await
        .expect("no reply");
    let latency = first - spoken.ended;
    // endpointing 500 ms + STT 100 + LLM first token 100 + TTS first byte 50, plus scheduling.
    assert!(
        latency >= Duration::from_millis(500),
        "replied before endpointing: {latency:?}"
    );
    assert!(
        latency < Duration::from_millis(2000),
        "slow reply: {latency:?}"
    );
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    {
        let st = caller.state();
        let reply = st.audio_since(spoken.ended);
        assert!(reply > Duration::from_secs(2), "reply too short: {reply:?}");
        assert!(st.clears.is_empty(), "no barge-in happened");
    }
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_turn_response_seconds_count", &[]), 1.0);
    assert!(
        m.has("hark_turn_response_seconds_bucket{provider=\"sim+sim+sim\",le=\"0.5\"}"),
        "histogram has real buckets, labelled by provider"
    );
    assert_eq!(m.get("hark_barge_ins_total"), 0.0);
}

#[tokio::test]
async fn barge_in_clears_and_no_media_of_the_cancelled_turn_follows() {
    let hark = Hark::start(&[]);
    let caller = hark.caller(3).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let asked = caller.say(speech("order")).await.unwrap();
    let reply = caller
        .wait_media_since(asked.ended, Duration::from_secs(5))
        .await
        .expect("no reply");
    tokio::time::sleep_until(reply + Duration::from_millis(800)).await;
    let interrupt = caller.say_later(speech("interrupt"));
    assert!(
        caller
            .wait_until(Duration::from_secs(3), |s| !s.clears.is_empty())
            .await,
        "no clear after barge-in"
    );
    let window = interrupt.await.unwrap();
    let clear = caller.state().clears[0];
    let barge_latency = clear.saturating_duration_since(window.started);
    assert!(
        barge_latency < Duration::from_millis(600),
        "slow barge-in: {barge_latency:?}"
    );
    // The bot answers the interruption, then goes quiet.
    assert!(
        caller
            .wait_media_since(window.ended, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    {
        let st = caller.state();
        assert_eq!(st.clears.len(), 1);
        assert_eq!(
            st.stale_frames, 0,
            "media of the cancelled turn after clear"
        );
        // Independent of mark attribution: the next reply cannot start before the
        // interrupting speech has ended plus endpointing, so any media in between is stale.
        let between = st.events.iter().filter(|e| matches!(e,
            hark_loadtest::Event::Media { at, .. } if *at > clear && *at < window.ended + Duration::from_millis(450))).count();
        assert_eq!(
            between, 0,
            "media after clear while the caller was still talking"
        );
    }
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_barge_ins_total"), 1.0);
}

#[tokio::test]
async fn echoed_marks_tell_hark_what_has_played() {
    let hark = Hark::start(&[]);
    // Twilio echoes a mark once its audio has played. A caller that never
    // echoes leaves Hark believing the greeting is still playing...
    let deaf = hark.caller_with(4, |o| o.echo_marks = false).await;
    assert!(deaf.wait_idle(QUIET, GREETING).await);
    deaf.say(speech("yes")).await.unwrap();
    assert!(
        deaf.wait_until(Duration::from_secs(3), |s| !s.clears.is_empty())
            .await,
        "without echoed marks, speech counts as talking over the bot"
    );
    // ...while one that echoes them is answered without a clear.
    let hearing = hark.caller(5).await;
    assert!(hearing.wait_idle(QUIET, GREETING).await);
    let spoken = hearing.say(speech("yes")).await.unwrap();
    assert!(
        hearing
            .wait_media_since(spoken.ended, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(hearing.state().clears.is_empty());
}

#[tokio::test]
async fn a_reply_right_after_the_previous_turn_plays_without_a_stall() {
    let hark = Hark::start(&[]);
    let caller = hark.caller(8).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    // A key press right after the greeting starts the next reply within a
    // second of the greeting's end: it must play continuously, not wait on
    // timers left over from the previous turn.
    let pressed = tokio::time::Instant::now();
    caller.dtmf('1');
    let first = caller
        .wait_media_since(pressed, Duration::from_secs(5))
        .await
        .expect("no reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    let st = caller.state();
    let media: Vec<_> = st
        .events
        .iter()
        .filter_map(|e| match e {
            hark_loadtest::Event::Media { at, .. } if *at >= first => Some(*at),
            _ => None,
        })
        .collect();
    let longest_gap = media.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    let audio = st.audio_since(first);
    assert!(
        audio > Duration::from_millis(1500),
        "reply too short: {audio:?}"
    );
    assert!(
        longest_gap < Duration::from_millis(400),
        "reply stalled for {longest_gap:?}"
    );
}

#[tokio::test]
async fn dtmf_is_accepted_and_answered() {
    let hark = Hark::start(&[]);
    let caller = hark.caller(6).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let pressed = tokio::time::Instant::now();
    caller.dtmf('5');
    assert!(
        caller
            .wait_media_since(pressed, Duration::from_secs(5))
            .await
            .is_some(),
        "no answer to DTMF"
    );
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_dtmf_total"), 1.0);
    assert_eq!(m.get("hark_media_sequence_gaps_total"), 0.0);
    assert!(
        !hark.logs().contains("bad carrier message"),
        "{}",
        hark.logs()
    );
}

#[tokio::test]
async fn stop_ends_the_call_and_its_whole_actor_tree() {
    let hark = Hark::start(&[]);
    let before = hark.metrics().await;
    assert_eq!(before.get("hark_call_actors"), 0.0);
    let tasks_before = before.get("hark_runtime_alive_tasks");
    let caller = hark.caller(7).await;
    assert!(
        caller
            .wait_media_since(caller.connected_at(), Duration::from_secs(3))
            .await
            .is_some()
    );
    let during = hark.metrics().await;
    assert_eq!(during.get("hark_calls_active"), 1.0);
    assert_eq!(
        during.get("hark_call_actors"),
        7.0,
        "supervisor + six children (no Transfer: the policy does not transfer)"
    );
    assert!(during.get("hark_runtime_alive_tasks") > tasks_before);
    caller.hangup();
    let closed = caller.wait_closed(Duration::from_secs(3)).await;
    assert!(closed.is_some(), "server did not close the stream");
    assert_eq!(
        hark.wait_metric("hark_calls_active", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
    assert_eq!(
        hark.wait_metric("hark_call_actors", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
    // A start-up task (the first pool connection, the spool replay) may end
    // while the call runs, so fewer tasks than before is fine; more is a leak.
    let tasks = hark
        .wait_metric_until(
            "hark_runtime_alive_tasks",
            |n| n <= tasks_before,
            Duration::from_secs(3),
        )
        .await;
    assert!(
        tasks <= tasks_before,
        "tasks leaked after the call: {tasks} alive, {tasks_before} before it"
    );
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_calls_ended_total{reason=\"stop\"}"), 1.0);
    assert_eq!(m.get("hark_calls_total"), 1.0);
}

/// Audio `text` is given by the sim TTS at `ms_per_char` (whitespace not counted).
fn sim_audio(text: &str, ms_per_char: u64) -> Duration {
    Duration::from_millis(text.chars().filter(|c| !c.is_whitespace()).count() as u64 * ms_per_char)
}

/// A greeting and a reply in Hindi, each longer than the sentence splitter's
/// cut, with byte 220 inside a character and no ASCII full stop: once this
/// dropped every call (the greeting) or left it deaf (the reply).
#[tokio::test]
async fn a_long_hindi_greeting_and_a_long_hindi_reply_are_spoken_whole() {
    let policy_file = crate::support::repo_path("tests/policies/hindi.toml");
    let policy = hark_actors::PolicyFile::load(std::path::Path::new(&policy_file)).unwrap();
    let reply = &policy.sim.llm.replies[0].say;
    assert!(!policy.greeting.is_char_boundary(220) && !reply.is_char_boundary(220));
    let hark = Hark::start_with(&["--policy", &policy_file], &[]);
    let caller = hark.caller(60).await;
    assert!(
        caller.wait_idle(QUIET, GREETING).await,
        "greeting never ended"
    );
    let connected = caller.connected_at();
    let greeting = caller.state().audio_since(connected);
    let expected = sim_audio(&policy.greeting, 10);
    // Every sentence of it, to the 100 ms chunk.
    assert!(
        greeting + Duration::from_millis(400) >= expected,
        "greeting cut short: {greeting:?} of {expected:?}"
    );
    let spoken = caller.say(speech("order")).await.unwrap();
    caller
        .wait_media_since(spoken.ended, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no Hindi reply:\n{}", hark.logs()));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    let heard = caller.state().audio_since(spoken.ended);
    let expected = sim_audio(reply, 10);
    assert!(
        heard + Duration::from_millis(400) >= expected,
        "reply cut short: {heard:?} of {expected:?}"
    );
    let m = hark.metrics().await;
    assert_eq!(
        m.sum("hark_actor_restarts_total", &[]),
        0.0,
        "{}",
        hark.logs()
    );
    assert_eq!(m.get("hark_calls_active"), 1.0);
    assert!(!hark.logs().contains("panicked"), "{}", hark.logs());
}

/// A reply task that fails (a bug, injected here as a panic) must end its
/// turn with the fallback line; the call must not go deaf.
#[tokio::test]
async fn a_failed_reply_task_ends_its_turn_with_the_fallback_line() {
    let hark = Hark::start(&[]);
    let caller = hark
        .caller_with(61, |o| {
            o.custom_parameters
                .insert("hark_fault".into(), "reply:after=1:once".into());
        })
        .await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let spoken = caller.say(speech("order")).await.unwrap();
    caller
        .wait_media_since(spoken.ended, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the call went deaf:\n{}", hark.logs()));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    // The default fallback line, at the sim's 60 ms a character.
    let fallback = hark_actors::PolicyFile::default().fallback_line;
    let heard = caller.state().audio_since(spoken.ended);
    let expected = sim_audio(&fallback, 60);
    assert!(
        heard + Duration::from_millis(400) >= expected && heard < expected * 2,
        "expected the fallback line ({expected:?}), heard {heard:?}"
    );
    assert!(hark.logs().contains("the reply task failed"));
    // The next turn is answered as usual.
    let again = caller.say(speech("order")).await.unwrap();
    assert!(
        caller
            .wait_media_since(again.ended, Duration::from_secs(5))
            .await
            .is_some()
    );
}
