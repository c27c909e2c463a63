//! A whole call tree in-process: real speech in through `MediaIn`, the

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
//! outbound queue read back as Twilio would see it.

use std::sync::Arc;
use std::time::Duration;

use hark_actors::call::CallSettings;
use hark_actors::fault::FaultPlan;
use hark_actors::media_in::deliver_media;
use hark_actors::policy_file::PolicyFile;
use hark_actors::records::{MemorySink, Record};
use hark_actors::ulaw;
use hark_actors::{
    CallArgs, CallHandle, CallIds, EndReason, MarkId, Outbound, Providers, start_call,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

fn speech(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/speech/{name}.ulaw",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fast_policy() -> PolicyFile {
    let mut p = PolicyFile::default();
    p.sim.stt.final_delay_ms = 50;
    p.sim.llm.first_token_ms = 20;
    p.sim.llm.tokens_per_second = 0.0;
    p.sim.tts.first_byte_ms = 10;
    p.sim.tts.real_time_factor = 0.0;
    p.greeting = "Hello there. How can I help?".into();
    p
}

struct Call {
    handle: CallHandle,
    out: mpsc::Receiver<Outbound>,
    records: Arc<MemorySink>,
    seq: u64,
}

impl Call {
    async fn start(policy: PolicyFile, fault: Option<&str>) -> Self {
        let (tx, out) = mpsc::channel(512);
        let policy = Arc::new(policy);
        let records = Arc::new(MemorySink::default());
        let handle = start_call(CallArgs {
            ids: CallIds {
                call_sid: "CAtest".into(),
                stream_sid: "MZtest".into(),
                account_sid: "ACtest".into(),
            },
            providers: Providers::simulated(&policy),
            policy,
            settings: CallSettings::default(),
            outbound: tx,
            fault: fault.map(|f| FaultPlan::parse(f).unwrap()),
            records: records.clone(),
            record_base: 0,
        })
        .await
        .unwrap();
        Self {
            handle,
            out,
            records,
            seq: 1,
        }
    }

    /// Sends audio in real time (20 ms frames), echoing marks and collecting what came back.
    async fn send(&mut self, audio: &[u8], got: &mut Vec<Outbound>) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in audio.chunks(160) {
            tick.tick().await;
            self.seq += 1;
            deliver_media(&self.handle.ctx, self.seq, frame);
            self.drain(got);
        }
    }

    async fn silence(&mut self, ms: usize, got: &mut Vec<Outbound>) {
        self.send(&vec![ulaw::SILENCE; ms * 8], got).await;
    }

    /// Stays silent until the bot has sent nothing for half a second.
    async fn until_quiet(&mut self, got: &mut Vec<Outbound>) {
        for _ in 0..150 {
            let before = got.len();
            self.silence(500, got).await;
            if !got[before..]
                .iter()
                .any(|m| matches!(m, Outbound::Media(_)))
            {
                return;
            }
        }
        panic!("the bot never went quiet");
    }

    /// Collects outbound messages, echoing marks at once.
    fn drain(&mut self, got: &mut Vec<Outbound>) {
        while let Ok(msg) = self.out.try_recv() {
            if let Outbound::Mark(id) = &msg {
                self.seq += 1;
                assert!(hark_actors::media_in::deliver_mark(
                    &self.handle.ctx,
                    self.seq,
                    *id
                ));
            }
            got.push(msg);
        }
    }
}

/// Milliseconds of bot audio in `msgs`.
fn audio_ms(msgs: &[Outbound]) -> usize {
    msgs.iter()
        .map(|m| match m {
            Outbound::Media(audio) => audio.len() / 8,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn greeting_reply_and_barge_in_without_stale_frames() {
    let mut call = Call::start(fast_policy(), None).await;
    let mut got = Vec::new();
    call.silence(3000, &mut got).await;
    assert!(
        audio_ms(&got) > 1000,
        "greeting audio: {} ms",
        audio_ms(&got)
    );
    assert!(!got.contains(&Outbound::Clear));

    // A full utterance gets a reply.
    got.clear();
    call.send(&speech("order"), &mut got).await;
    call.silence(1500, &mut got).await;
    assert!(audio_ms(&got) > 400, "reply audio: {} ms", audio_ms(&got));
    assert!(!got.contains(&Outbound::Clear), "no barge-in expected");
    let t = call.handle.ctx.history().turns().to_vec();
    assert!(t.iter().any(|t| t.text().contains("took")), "{t:?}");

    // Let the reply play for a moment, then interrupt it.
    call.until_quiet(&mut got).await;
    got.clear();
    call.send(&speech("yes"), &mut got).await;
    call.silence(700, &mut got).await; // reply starts
    call.send(&speech("interrupt"), &mut got).await;
    call.silence(1500, &mut got).await;
    let clear = got
        .iter()
        .position(|m| *m == Outbound::Clear)
        .expect("clear after barge-in");
    // Every mark after the clear belongs to a newer turn than every mark before it.
    let gen_of = |m: &Outbound| match m {
        Outbound::Mark(MarkId { generation, .. }) => Some(*generation),
        _ => None,
    };
    let before = got[..clear].iter().filter_map(gen_of).max().unwrap();
    let after: Vec<_> = got[clear..].iter().filter_map(gen_of).collect();
    assert!(!after.is_empty(), "the bot answers the interruption");
    assert!(
        after.iter().all(|g| *g > before),
        "stale marks after clear: {after:?} vs {before}"
    );
    let turns = call.handle.ctx.history().turns().to_vec();
    assert!(turns.iter().any(|t| t.interrupted), "{turns:?}");

    call.handle
        .supervisor
        .send_message(hark_actors::SupervisorMsg::Hangup {
            reason: EndReason::Stop,
        })
        .unwrap();
    timeout(Duration::from_secs(2), call.handle.done)
        .await
        .unwrap()
        .unwrap();

    // The record: every turn once, in order, the cut one with what was heard.
    let records = call.records.0.lock().unwrap().clone();
    let turns: Vec<(u32, String, String, Option<String>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Turn {
                seq,
                speaker,
                text,
                heard,
                ..
            } => Some((*seq, speaker.clone(), text.clone(), heard.clone())),
            _ => None,
        })
        .collect();
    let seqs: Vec<u32> = turns.iter().map(|t| t.0).collect();
    assert_eq!(
        seqs,
        (0..turns.len() as u32).collect::<Vec<_>>(),
        "{turns:?}"
    );
    let speakers: Vec<&str> = turns.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(
        &speakers[..5],
        ["bot", "caller", "bot", "caller", "bot"],
        "{turns:?}"
    );
    let (_, _, said, heard) = &turns[4];
    let heard = heard
        .as_ref()
        .expect("the interrupted turn has its heard part");
    assert!(
        said.starts_with(heard.as_str()) && said.len() > heard.len(),
        "{said:?} / {heard:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::Event { kind, .. } if kind == "barge_in"))
    );
    assert!(
        matches!(records.last(), Some(Record::CallEnded { end_reason, .. }) if end_reason == "stop")
    );
}

#[tokio::test]
async fn a_panicking_child_is_restarted_and_the_call_goes_on() {
    let mut call = Call::start(fast_policy(), Some("vad:after=100:once")).await;
    let mut got = Vec::new();
    call.silence(2500, &mut got).await; // VAD panics at frame 100
    got.clear();
    call.send(&speech("hours"), &mut got).await;
    call.silence(2000, &mut got).await;
    assert!(
        audio_ms(&got) > 400,
        "reply after restart: {} ms",
        audio_ms(&got)
    );
    assert!(!call.handle.done.is_finished());
}

#[tokio::test]
async fn exhausted_restart_budget_ends_the_call_with_an_apology() {
    let mut call = Call::start(fast_policy(), Some("stt:after=6:always")).await;
    let mut got = Vec::new();
    let start = Instant::now();
    while !call.handle.done.is_finished() && start.elapsed() < Duration::from_secs(10) {
        call.silence(100, &mut got).await;
    }
    assert!(call.handle.done.is_finished(), "call did not end");
    call.drain(&mut got);
    assert_eq!(got.last(), Some(&Outbound::Close(EndReason::RestartBudget)));
}
