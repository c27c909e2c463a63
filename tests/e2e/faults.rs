//! Supervision: a failing child is restarted and the call goes on; an
//! exhausted restart budget ends the call cleanly with an apology.

use std::time::Duration;

use crate::support::{GREETING, Hark, QUIET, speech};

#[tokio::test]
async fn a_child_that_panics_mid_call_is_restarted_and_the_call_goes_on() {
    let hark = Hark::start(&[]);
    // The VAD panics at its 100th frame (2 s into the call), once.
    let caller = hark
        .caller_with(20, |o| {
            o.custom_parameters
                .insert("hark_fault".into(), "vad:after=100:once".into());
        })
        .await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let restarted = hark
        .wait_metric(
            "hark_actor_restarts_total{actor=\"vad\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(restarted, 1.0, "{}", hark.logs());
    let spoken = caller.say(speech("hours")).await.unwrap();
    assert!(
        caller
            .wait_media_since(spoken.ended, Duration::from_secs(5))
            .await
            .is_some(),
        "no reply after the restart"
    );
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_calls_active"), 1.0);
    assert_eq!(
        m.get("hark_call_actors"),
        7.0,
        "the restarted child replaced the failed one"
    );
    assert!(hark.logs().contains("child actor restarted"));
}

#[tokio::test]
async fn a_tts_failure_mid_reply_restarts_the_reply() {
    let hark = Hark::start(&[]);
    // TTS handles ~8 messages for the greeting; it fails on the reply.
    let caller = hark
        .caller_with(21, |o| {
            o.custom_parameters
                .insert("hark_fault".into(), "tts:after=10:once".into());
        })
        .await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let spoken = caller.say(speech("order")).await.unwrap();
    assert!(
        caller
            .wait_media_since(spoken.ended, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    let m = hark.metrics().await;
    assert_eq!(
        m.get("hark_actor_restarts_total{actor=\"tts\"}"),
        1.0,
        "{}",
        hark.logs()
    );
    assert_eq!(caller.state().stale_frames, 0);
}

#[tokio::test]
async fn an_exhausted_restart_budget_ends_the_call_with_an_apology() {
    let hark = Hark::start(&[("HARK_CALL__RESTART_BUDGET", "2")]);
    // STT fails every 5 batches (0.5 s): budget 2, so the third failure ends the call.
    let caller = hark
        .caller_with(22, |o| {
            o.custom_parameters
                .insert("hark_fault".into(), "stt:after=5:always".into());
        })
        .await;
    let closed = caller.wait_closed(Duration::from_secs(20)).await;
    let (code, reason) = closed.expect("call was not ended");
    assert_eq!(code, Some(1000));
    assert_eq!(reason, "restart_budget");
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_actor_restarts_total{actor=\"stt\"}"), 2.0);
    assert_eq!(
        m.get("hark_calls_ended_total{reason=\"restart_budget\"}"),
        1.0
    );
    assert!(hark.logs().contains("restart budget exhausted"));
    // The apology (~4.8 s of audio) played before the close; the greeting
    // (~1.3 s) was over before the budget ran out, 1.5 s into the call.
    {
        let st = caller.state();
        let (closed_at, _, _) = st.closed.clone().unwrap();
        let last = st.audio_since(closed_at - Duration::from_secs(6));
        assert!(last > Duration::from_secs(3), "apology audio: {last:?}");
    }
    assert_eq!(
        hark.wait_metric("hark_call_actors", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
}
