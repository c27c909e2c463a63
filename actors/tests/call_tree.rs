//! A whole call tree in-process, over two test carriers speaking the
//! carrier port: one that plays audio in real time and reports playback
//! like Twilio's marks, and one that reports none (Hark estimates it). Real
//! speech goes in as `Event::Audio`; the carrier reads back the commands.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use hark_actors::fault::FaultPlan;
use hark_actors::media_in::deliver;
use hark_actors::policy::PolicyFile;
use hark_actors::records::{MemorySink, Record};
use hark_actors::ulaw;
use hark_actors::{
    CallArgs, CallHandle, CallIds, CallSettings, Capabilities, Checkpoint, Command, EndReason,
    Providers, start_call,
};
use hark_carrier::port::Event;
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

/// How a test carrier plays the bot's audio.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TestCarrier {
    /// Plays audio in real time and answers each checkpoint once the audio
    /// before it has played; on `clear` drops its buffer and answers the
    /// pending checkpoints at once (as Twilio does with marks).
    ReportsPlayback,
    /// Plays audio and answers nothing: Hark must estimate playback.
    NoPlaybackReports,
}

impl TestCarrier {
    fn capabilities(self) -> Capabilities {
        match self {
            TestCarrier::ReportsPlayback => Capabilities::TWILIO,
            TestCarrier::NoPlaybackReports => Capabilities {
                reports_playback: false,
                ..Capabilities::TWILIO
            },
        }
    }
}

struct Call {
    handle: CallHandle,
    carrier: TestCarrier,
    out: mpsc::Receiver<Command>,
    records: Arc<MemorySink>,
    seq: u64,
    /// When the audio the carrier holds will have played.
    played_until: Instant,
    /// Checkpoints not yet answered, with when their audio has played.
    pending: VecDeque<(Instant, Checkpoint)>,
}

impl Call {
    async fn start(policy: PolicyFile, fault: Option<&str>) -> Self {
        Self::start_on(TestCarrier::ReportsPlayback, policy, fault).await
    }

    async fn start_on(carrier: TestCarrier, policy: PolicyFile, fault: Option<&str>) -> Self {
        let (tx, out) = mpsc::channel(512);
        let policy = Arc::new(policy);
        let records = Arc::new(MemorySink::default());
        let handle = start_call(CallArgs {
            placed: None,
            resumed: Default::default(),
            ids: CallIds {
                carrier: "test",
                call_id: "CAtest".into(),
                stream_id: "MZtest".into(),
            },
            capabilities: carrier.capabilities(),
            providers: Providers::simulated(&policy),
            policy,
            settings: CallSettings::default(),
            outbound: tx,
            transfer: None,
            fault: fault.map(|f| FaultPlan::parse(f).unwrap()),
            records: records.clone(),
            record_base: 0,
            ask_consent: false,
            recordings: None,
            languages: Default::default(),
        })
        .await
        .unwrap();
        Self {
            handle,
            carrier,
            out,
            records,
            seq: 1,
            played_until: Instant::now(),
            pending: VecDeque::new(),
        }
    }

    /// Sends audio in real time (20 ms frames), collecting what came back.
    async fn send(&mut self, audio: &[u8], got: &mut Vec<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in audio.chunks(160) {
            tick.tick().await;
            self.seq += 1;
            deliver(
                &self.handle.ctx,
                Event::Audio {
                    seq: self.seq,
                    payload: frame,
                },
            );
            self.drain(got);
        }
    }

    async fn silence(&mut self, ms: usize, got: &mut Vec<Command>) {
        self.send(&vec![ulaw::SILENCE; ms * 8], got).await;
    }

    /// Stays silent until the bot has sent nothing for half a second.
    async fn until_quiet(&mut self, got: &mut Vec<Command>) {
        for _ in 0..150 {
            let before = got.len();
            self.silence(500, got).await;
            if !got[before..].iter().any(|m| matches!(m, Command::Audio(_))) {
                return;
            }
        }
        panic!("the bot never went quiet");
    }

    /// Collects the call's commands and plays them as the carrier would.
    fn drain(&mut self, got: &mut Vec<Command>) {
        let now = Instant::now();
        while let Ok(msg) = self.out.try_recv() {
            match &msg {
                Command::Audio(audio) => {
                    self.played_until = self.played_until.max(now)
                        + Duration::from_micros(audio.len() as u64 * 125);
                }
                Command::Checkpoint(c) => {
                    assert_eq!(
                        self.carrier,
                        TestCarrier::ReportsPlayback,
                        "a checkpoint to a carrier that reports no playback"
                    );
                    self.pending.push_back((self.played_until, *c));
                }
                Command::Clear => {
                    self.played_until = now;
                    while let Some((_, c)) = self.pending.pop_front() {
                        self.answer(c);
                    }
                }
                Command::Close { .. } => {}
            }
            got.push(msg);
        }
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, c)) = self.pending.pop_front() {
                self.answer(c);
            }
        }
    }

    fn answer(&mut self, checkpoint: Checkpoint) {
        self.seq += 1;
        assert!(deliver(
            &self.handle.ctx,
            Event::Played {
                seq: self.seq,
                checkpoint,
            }
        ));
    }
}

/// Milliseconds of bot audio in `msgs`.
fn audio_ms(msgs: &[Command]) -> usize {
    msgs.iter()
        .map(|m| match m {
            Command::Audio(audio) => audio.len() / 8,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn greeting_reply_and_barge_in_without_stale_frames_on_a_carrier_that_reports_playback() {
    greeting_reply_and_barge_in_without_stale_frames(TestCarrier::ReportsPlayback).await;
}

#[tokio::test]
async fn greeting_reply_and_barge_in_without_stale_frames_on_a_carrier_that_reports_no_playback() {
    greeting_reply_and_barge_in_without_stale_frames(TestCarrier::NoPlaybackReports).await;
}

async fn greeting_reply_and_barge_in_without_stale_frames(carrier: TestCarrier) {
    let mut call = Call::start_on(carrier, fast_policy(), None).await;
    let mut got = Vec::new();
    call.silence(3000, &mut got).await;
    assert!(
        audio_ms(&got) > 1000,
        "greeting audio: {} ms",
        audio_ms(&got)
    );
    assert!(!got.contains(&Command::Clear));

    // A full utterance gets a reply.
    got.clear();
    call.send(&speech("order"), &mut got).await;
    call.silence(1500, &mut got).await;
    assert!(audio_ms(&got) > 400, "reply audio: {} ms", audio_ms(&got));
    assert!(!got.contains(&Command::Clear), "no barge-in expected");
    let t = call.handle.ctx.history().turns().to_vec();
    assert!(t.iter().any(|t| t.text().contains("took")), "{t:?}");

    // Let the reply play for a moment, then interrupt it.
    call.until_quiet(&mut got).await;
    got.clear();
    call.send(&speech("yes"), &mut got).await;
    // Let the reply play for 600 ms (so part of it is heard), then talk over it.
    let replied = Instant::now();
    while audio_ms(&got) == 0 {
        assert!(replied.elapsed() < Duration::from_secs(10), "no reply");
        call.silence(20, &mut got).await;
    }
    call.silence(600, &mut got).await;
    call.send(&speech("interrupt"), &mut got).await;
    // The bot cannot answer before the caller has stopped: any audio between
    // the clear and here is a stale frame of the cancelled turn.
    let interrupted_until = got.len();
    call.silence(1500, &mut got).await;
    let clear = got
        .iter()
        .position(|m| *m == Command::Clear)
        .expect("clear after barge-in");
    assert!(
        clear < interrupted_until,
        "no clear while the caller was talking over the bot"
    );
    let stale = got[clear..interrupted_until]
        .iter()
        .filter(|m| matches!(m, Command::Audio(_)))
        .count();
    assert_eq!(stale, 0, "audio after the clear, while the caller spoke");
    assert!(
        audio_ms(&got[interrupted_until..]) > 0,
        "the bot answers the interruption"
    );
    if carrier == TestCarrier::ReportsPlayback {
        // Every checkpoint after the clear belongs to a newer turn than every one before it.
        let turn_of = |m: &Command| match m {
            Command::Checkpoint(Checkpoint { turn, .. }) => Some(*turn),
            _ => None,
        };
        let before = got[..clear].iter().filter_map(turn_of).max().unwrap();
        let after: Vec<_> = got[clear..].iter().filter_map(turn_of).collect();
        assert!(!after.is_empty(), "the bot answers the interruption");
        assert!(
            after.iter().all(|g| *g > before),
            "stale checkpoints after clear: {after:?} vs {before}"
        );
    }
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
    assert_eq!(
        got.last(),
        Some(&Command::Close {
            reason: EndReason::RestartBudget.as_str()
        })
    );
}

#[tokio::test]
async fn a_scripted_tool_call_records_the_outcome_and_the_bot_says_what_follows() {
    let mut policy = fast_policy();
    policy.sim.stt.script = vec!["I want the pro plan please".into()];
    policy.outcome.slots.insert(
        "plan".into(),
        hark_actors::policy::Slot {
            kind: hark_actors::policy::SlotType::Enum,
            values: vec!["basic".into(), "pro".into()],
            required: true,
            description: "The plan the caller chose".into(),
            sensitive: false,
        },
    );
    let mut arguments = serde_json::Map::new();
    arguments.insert("plan".into(), "pro".into());
    policy.sim.llm.replies = vec![hark_actors::policy::SimReply {
        when: "pro plan".into(),
        say: "Let me note that.".into(),
        tool: Some("record_outcome".into()),
        arguments,
        then: "Done, the pro plan it is.".into(),
        ..Default::default()
    }];
    let mut call = Call::start(policy, None).await;
    let mut got = Vec::new();
    call.silence(3000, &mut got).await; // the greeting
    call.send(&speech("order"), &mut got).await;
    call.silence(1500, &mut got).await; // the reply starts
    call.until_quiet(&mut got).await;
    let outcome = call.handle.ctx.outcome();
    assert_eq!(
        outcome.as_ref().and_then(|o| o.slots.get("plan")),
        Some(&serde_json::Value::from("pro")),
        "{:?}",
        call.handle.ctx.history().turns()
    );
    // The only required slot is filled.
    assert_eq!(outcome.map(|o| o.disposition).as_deref(), Some("qualified"));
    let said: Vec<String> = call
        .handle
        .ctx
        .history()
        .turns()
        .iter()
        .map(|t| t.text())
        .collect();
    assert!(
        said.iter().any(|t| t.contains("Done, the pro plan it is.")),
        "{said:?}"
    );
}
