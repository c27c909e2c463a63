//! A call Hark placed, in-process: the bot stays quiet until the callee's
//! first words, the carrier's verdict or the answer timeout; a machine gets
//! the voicemail message after its beep (heard on the audio, or the
//! carrier's `machine_end`), or a hang-up; the lead's fields reach the
//! prompt and the message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hark_actors::context::Placed;
use hark_actors::media_in::deliver;
use hark_actors::policy::{MachineAction, PolicyFile};
use hark_actors::protocol::AnsweredBy;
use hark_actors::records::{MemorySink, Record};
use hark_actors::{
    CallArgs, CallHandle, CallIds, CallSettings, Capabilities, EndReason, Providers, SupervisorMsg,
    start_call,
};
use hark_carrier::port::Event;
use tokio::sync::mpsc;

fn policy(on_machine: MachineAction) -> PolicyFile {
    let mut p = PolicyFile::default();
    p.sim.stt.final_delay_ms = 50;
    p.sim.llm.first_token_ms = 20;
    p.sim.llm.tokens_per_second = 0.0;
    p.sim.tts.first_byte_ms = 10;
    p.sim.tts.real_time_factor = 0.0;
    p.greeting = "Hi, this is Asha from Acme.".into();
    p.system_prompt = "Call {caller.name} about {caller.plan}.".into();
    p.prompt.caller_fields = vec!["name".into(), "plan".into()];
    p.outbound.on_machine = on_machine;
    p.outbound.voicemail_message = "Hi {caller.name}, Asha here; call us back.".into();
    p.outbound.answer_timeout_ms = 4000;
    p.outbound.beep_timeout_secs = 1;
    assert!(p.validate().is_empty(), "{:?}", p.validate());
    p
}

struct Call {
    handle: CallHandle,
    records: Arc<MemorySink>,
    _drain: tokio::task::JoinHandle<()>,
}

async fn call(policy: PolicyFile, machine_detection: bool, verdict: Option<AnsweredBy>) -> Call {
    let (tx, mut out) = mpsc::channel(512);
    let policy = Arc::new(policy);
    let records = Arc::new(MemorySink::default());
    let lead = BTreeMap::from([
        ("name".to_owned(), "प्रिया".to_owned()),
        ("plan".to_owned(), "pro".to_owned()),
    ]);
    let handle = start_call(CallArgs {
        resumed: Default::default(),
        placed: Some(Placed {
            lead,
            machine_detection,
            verdict,
        }),
        ids: CallIds {
            carrier: "test",
            call_id: "CAoutbound".into(),
            stream_id: "MZone".into(),
        },
        capabilities: Capabilities {
            reports_playback: false,
            ..Capabilities::TWILIO
        },
        providers: Providers::simulated(&policy),
        policy,
        settings: CallSettings::default(),
        outbound: tx,
        transfer: None,
        fault: None,
        records: records.clone(),
        record_base: 0,
        ask_consent: false,
        recordings: None,
        languages: Default::default(),
    })
    .await
    .unwrap();
    let drain = tokio::spawn(async move { while out.recv().await.is_some() {} });
    Call {
        handle,
        records,
        _drain: drain,
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(path),
    )
    .unwrap()
}

impl Call {
    /// Plays μ-law audio into the call in real time, then `tail_ms` of silence.
    async fn play(&self, audio: &[u8], tail_ms: usize) {
        let silence = vec![0xffu8; tail_ms * 8];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (i, frame) in audio.chunks(160).chain(silence.chunks(160)).enumerate() {
            tick.tick().await;
            deliver(
                &self.handle.ctx,
                Event::Audio {
                    seq: i as u64 + 2,
                    payload: frame,
                },
            );
        }
    }

    fn events(&self) -> Vec<String> {
        self.records
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Record::Event { kind, detail, .. } => Some(format!("{kind}: {detail}")),
                _ => None,
            })
            .collect()
    }

    fn bot_lines(&self) -> Vec<String> {
        self.records
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Record::Turn { speaker, text, .. } if speaker == "bot" => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn disposition(&self) -> Option<String> {
        self.records.0.lock().unwrap().iter().find_map(|r| match r {
            Record::Outcome { disposition, .. } => disposition.clone(),
            _ => None,
        })
    }

    fn bot_started(&self) -> bool {
        self.handle.ctx.generation() > 0
    }

    async fn until(&self, what: &str, pred: impl Fn(&Call) -> bool) {
        for _ in 0..200 {
            if pred(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: events {:#?}", self.events());
    }
}

async fn end_of(c: Call) -> (EndReason, Vec<String>, Option<String>, Vec<String>) {
    let Call {
        handle, records, ..
    } = c;
    tokio::time::timeout(Duration::from_secs(10), handle.done)
        .await
        .expect("the call ended")
        .unwrap();
    let c = Call {
        handle: CallHandle {
            ctx: handle.ctx,
            supervisor: handle.supervisor,
            done: tokio::spawn(async {}),
        },
        records,
        _drain: tokio::spawn(async {}),
    };
    (
        c.handle.ctx.end_reason().expect("an end reason"),
        c.bot_lines(),
        c.disposition(),
        c.events(),
    )
}

#[tokio::test]
async fn a_person_is_not_talked_over_the_greeting_answers_their_first_words() {
    let c = call(policy(MachineAction::LeaveMessage), false, None).await;
    assert!(c.handle.ctx.system_prompt.contains("Call प्रिया about pro."));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!c.bot_started(), "the bot spoke before anyone did");
    c.play(&fixture("speech/yes.ulaw"), 600).await;
    c.until("the greeting", |c| {
        c.bot_lines().iter().any(|l| l.contains("Asha from Acme"))
    })
    .await;
    assert!(
        c.events()
            .contains(&"outbound: a person (first_words)".to_owned())
    );
}

#[tokio::test]
async fn a_silent_callee_hears_the_greeting_after_the_answer_timeout() {
    let mut p = policy(MachineAction::LeaveMessage);
    p.outbound.answer_timeout_ms = 1500;
    let c = call(p, false, None).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!c.bot_started());
    c.until("the greeting", |c| !c.bot_lines().is_empty()).await;
    assert!(
        c.events()
            .contains(&"outbound: a person (timeout)".to_owned())
    );
}

#[tokio::test]
async fn with_machine_detection_words_wait_for_the_verdict() {
    let c = call(policy(MachineAction::LeaveMessage), true, None).await;
    c.play(&fixture("speech/yes.ulaw"), 300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!c.bot_started(), "spoke before the verdict");
    c.handle
        .supervisor
        .send_message(SupervisorMsg::Answered(AnsweredBy::Human))
        .unwrap();
    c.until("the greeting", |c| !c.bot_lines().is_empty()).await;
    assert!(c.events().contains(&"answered_by: human".to_owned()));
}

#[tokio::test]
async fn a_machine_gets_the_message_after_the_beep_it_plays() {
    let mut p = policy(MachineAction::LeaveMessage);
    p.outbound.beep_timeout_secs = 10;
    let c = call(p, true, None).await;
    c.handle
        .supervisor
        .send_message(SupervisorMsg::Answered(AnsweredBy::Machine {
            ended: false,
        }))
        .unwrap();
    let greeting = fixture("beeps/beep-1000hz-20db-500ms-brownnoise-at2988.ulaw");
    let play = c.play(&greeting, 400);
    // Nothing said during the machine's greeting.
    let watch = async {
        while !c.bot_started() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = play => {}
        _ = watch => {
            let events = c.events();
            assert!(events.iter().any(|e| e.starts_with("beep: 1000 Hz")), "spoke before the beep: {events:?}");
        }
    }
    let (reason, lines, disposition, events) = end_of(c).await;
    assert_eq!(reason, EndReason::Voicemail);
    assert_eq!(lines, ["Hi प्रिया, Asha here; call us back."]);
    assert_eq!(disposition.as_deref(), Some("voicemail"));
    assert!(
        events.iter().any(|e| e.starts_with("beep: 1000 Hz, ")),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_carriers_end_of_greeting_a_missing_beep_and_a_fax() {
    // machine_end: at once.
    let c = call(policy(MachineAction::LeaveMessage), true, None).await;
    c.handle
        .supervisor
        .send_message(SupervisorMsg::Answered(AnsweredBy::Machine { ended: true }))
        .unwrap();
    let (reason, lines, ..) = end_of(c).await;
    assert_eq!((reason, lines.len()), (EndReason::Voicemail, 1));
    // machine_start and no beep: after beep_timeout_secs.
    let c = call(policy(MachineAction::LeaveMessage), true, None).await;
    c.handle
        .supervisor
        .send_message(SupervisorMsg::Answered(AnsweredBy::Machine {
            ended: false,
        }))
        .unwrap();
    let (reason, lines, _, events) = end_of(c).await;
    assert_eq!((reason, lines.len()), (EndReason::Voicemail, 1));
    assert!(events.contains(&"beep: none in time".to_owned()));
    // A fax (a verdict that came before the stream): hung up, nothing said.
    let c = call(
        policy(MachineAction::LeaveMessage),
        true,
        Some(AnsweredBy::Fax),
    )
    .await;
    let (reason, lines, disposition, _) = end_of(c).await;
    assert_eq!((reason, lines.len()), (EndReason::Machine, 0));
    assert_eq!(disposition.as_deref(), Some("voicemail"));
}

#[tokio::test]
async fn hang_up_on_machines_says_nothing() {
    let c = call(policy(MachineAction::HangUp), true, None).await;
    c.handle
        .supervisor
        .send_message(SupervisorMsg::Answered(AnsweredBy::Machine {
            ended: false,
        }))
        .unwrap();
    let (reason, lines, disposition, _) = end_of(c).await;
    assert_eq!(reason, EndReason::Machine);
    assert!(lines.is_empty());
    assert_eq!(disposition.as_deref(), Some("voicemail"));
}

#[tokio::test]
async fn a_key_pressed_while_waiting_is_a_person() {
    let c = call(policy(MachineAction::LeaveMessage), true, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.bot_started());
    for _ in 0..100 {
        if deliver(&c.handle.ctx, Event::Dtmf { seq: 2, digit: '1' }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.until("the greeting", |c| c.bot_started()).await;
    assert!(c.events().contains(&"outbound: a person (key)".to_owned()));
}
