//! The Transfer actor and the supervisor's side of a transfer, in-process
//! with a scripted `TransferDesk`: every step the desk is asked for, every
//! fault it can answer with (the directory down, hold or dial refused), a
//! stream's end while the caller is away, the caller hanging up mid-transfer,
//! and no call control at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hark_actors::media_in::deliver;
use hark_actors::policy::{EscalationTrigger, PolicyFile, TransferMode};
use hark_actors::protocol::{AgentEvent, TransferMsg};
use hark_actors::records::{MemorySink, Record};
use hark_actors::transfer::{AgentDial, AgentLeg, DeskError, Handoff, TransferDesk};
use hark_actors::{
    CallArgs, CallHandle, CallIds, CallSettings, Capabilities, EndReason, Providers, SupervisorMsg,
    start_call,
};
use hark_carrier::port::Event;
use tokio::sync::mpsc;

#[derive(Default)]
struct Desk {
    log: Mutex<Vec<String>>,
    fail: Mutex<HashSet<&'static str>>,
    agent: Option<AgentLeg>,
    handoff: Mutex<Option<Handoff>>,
}

impl Desk {
    fn with_agent() -> Self {
        Self {
            agent: Some(AgentLeg {
                name: "asha".into(),
                address: "+14155550111".into(),
            }),
            ..Self::default()
        }
    }

    fn failing(self, step: &'static str) -> Self {
        self.fail.lock().unwrap().insert(step);
        self
    }

    fn note(&self, step: &'static str, what: String) -> Result<(), DeskError> {
        self.log.lock().unwrap().push(what);
        if self.fail.lock().unwrap().contains(step) {
            Err(DeskError(format!("{step} refused")))
        } else {
            Ok(())
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl TransferDesk for Desk {
    async fn cold(&self, _: &CallIds, to: &str) -> Result<(), DeskError> {
        self.note("cold", format!("cold {to}"))
    }
    async fn reserve(
        &self,
        _: &CallIds,
        skill: &str,
        language: &str,
    ) -> Result<Option<AgentLeg>, DeskError> {
        self.note("reserve", format!("reserve {skill} {language}"))?;
        Ok(self.agent.clone())
    }
    async fn release(&self, _: &CallIds) {
        let _ = self.note("release", "release".into());
    }
    async fn hold(&self, _: &CallIds, _: &str, record: bool) -> Result<(), DeskError> {
        assert!(!record, "no consent, no conference recording");
        self.note("hold", "hold".into())
    }
    async fn dial_agent(
        &self,
        _: &CallIds,
        dial: &AgentDial,
        handoff: Handoff,
    ) -> Result<String, DeskError> {
        *self.handoff.lock().unwrap() = Some(handoff);
        self.note("dial", format!("dial {}", dial.agent.name))?;
        Ok("CAleg".into())
    }
    async fn hang_up(&self, leg: &str) {
        let _ = self.note("hang_up", format!("hang_up {leg}"));
    }
    async fn back_to_bot(&self, _: &CallIds) -> Result<(), DeskError> {
        self.note("back", "back".into())
    }
}

fn policy(mode: TransferMode) -> PolicyFile {
    let mut p = PolicyFile::default();
    p.sim.stt.final_delay_ms = 50;
    p.sim.llm.first_token_ms = 20;
    p.sim.llm.tokens_per_second = 0.0;
    p.sim.tts.first_byte_ms = 10;
    p.sim.tts.real_time_factor = 0.0;
    p.greeting = "Hi.".into();
    p.rules.escalation.triggers = vec![EscalationTrigger::Dtmf];
    p.rules.escalation.line = "One moment.".into();
    p.transfer.mode = mode;
    p.transfer.ring_secs = 2;
    p.transfer.accept_secs = 1;
    p.transfer.hold_secs = 1;
    p.transfer.summary_ms = 100;
    p.transfer
        .to
        .insert("default".into(), "+14155550199".into());
    p
}

struct Call {
    handle: CallHandle,
    records: Arc<MemorySink>,
    _drain: tokio::task::JoinHandle<()>,
}

async fn call(mode: TransferMode, desk: Option<Arc<Desk>>) -> Call {
    call_with(policy(mode), false, desk).await
}

async fn call_with(policy: PolicyFile, ask_consent: bool, desk: Option<Arc<Desk>>) -> Call {
    let (tx, mut out) = mpsc::channel(512);
    let policy = Arc::new(policy);
    let records = Arc::new(MemorySink::default());
    let handle = start_call(CallArgs {
        placed: None,
        resumed: Default::default(),
        ids: CallIds {
            carrier: "test",
            call_id: "CAtransfer".into(),
            stream_id: "MZone".into(),
        },
        // Playback estimated by the clock: the line's end needs no carrier.
        capabilities: Capabilities {
            reports_playback: false,
            ..Capabilities::TWILIO
        },
        providers: Providers::simulated(&policy),
        policy,
        settings: CallSettings::default(),
        outbound: tx,
        transfer: desk.map(|d| d as Arc<dyn TransferDesk>),
        fault: None,
        records: records.clone(),
        record_base: 0,
        ask_consent,
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

impl Call {
    /// Presses a key once the tree is up (children start after `start_call`).
    async fn press(&self, digit: char) {
        for _ in 0..100 {
            if deliver(&self.handle.ctx, Event::Dtmf { seq: 2, digit }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("MediaIn never took the key");
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

    async fn until(&self, what: &str, pred: impl Fn(&Call) -> bool) {
        for _ in 0..200 {
            if pred(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: events {:#?}", self.events());
    }

    fn has_event(&self, e: &str) -> bool {
        self.events().iter().any(|x| x == e)
    }

    async fn ended(self) -> EndReason {
        tokio::time::timeout(Duration::from_secs(5), self.handle.done)
            .await
            .expect("the call ended")
            .unwrap();
        self.handle.ctx.end_reason().expect("an end reason")
    }
}

#[tokio::test]
async fn accepted_warm_transfer_ends_the_tree_transferred_and_a_stop_while_away_does_not() {
    let desk = Arc::new(Desk::with_agent());
    let c = call(TransferMode::Warm, Some(desk.clone())).await;
    c.press('0').await;
    c.until("the agent dialed", |_| {
        desk.log().contains(&"dial asha".to_owned())
    })
    .await;
    assert_eq!(desk.log(), ["reserve agent en", "hold", "dial asha"]);
    assert!(c.handle.ctx.is_away());
    // The carrier ends the stream after the hold redirect: the call goes on.
    let _ = c.handle.supervisor.send_message(SupervisorMsg::Hangup {
        reason: EndReason::Stop,
    });
    c.until("stream end noted", |c| {
        c.has_event("stream_ended: stop while away")
    })
    .await;
    let handoff = desk.handoff.lock().unwrap().clone().unwrap();
    assert_eq!(handoff.summary_source, "template");
    assert_eq!(handoff.summary, "Transfer for agent.");
    let leg = "CAleg".to_owned();
    for event in [AgentEvent::Answered, AgentEvent::Accepted] {
        c.handle.ctx.routes.transfer.send(TransferMsg::Agent {
            leg: leg.clone(),
            event,
        });
    }
    assert_eq!(c.ended().await, EndReason::Transferred);
}

#[tokio::test]
async fn an_agent_who_never_accepts_is_hung_up_released_and_the_caller_comes_back() {
    let desk = Arc::new(Desk::with_agent());
    let c = call(TransferMode::Warm, Some(desk.clone())).await;
    c.press('0').await;
    // ring_secs + accept_secs = 3 s without a word from the agent's leg.
    c.until("back", |_| desk.log().contains(&"back".to_owned()))
        .await;
    assert_eq!(
        desk.log(),
        [
            "reserve agent en",
            "hold",
            "dial asha",
            "hang_up CAleg",
            "release",
            "back"
        ]
    );
    assert!(c.has_event("transfer: warm no_answer"));
    // Still away until the new stream comes; then the back line is said.
    assert!(c.handle.ctx.is_away());
    let _ = c
        .handle
        .supervisor
        .send_message(SupervisorMsg::StreamAttached {
            stream_id: "MZtwo".into(),
        });
    let back = c.handle.ctx.policy.transfer.back_line.clone();
    c.until("the back line", |c| c.bot_lines().contains(&back))
        .await;
    assert!(!c.handle.ctx.is_away());
    assert!(c.has_event("stream_started: MZtwo"));
}

#[tokio::test]
async fn desk_faults_bring_the_caller_back_without_a_broken_call() {
    for (fails, log) in [
        ("reserve", vec!["reserve agent en"]),
        ("hold", vec!["reserve agent en", "hold", "release"]),
        (
            "dial",
            vec!["reserve agent en", "hold", "dial asha", "release", "back"],
        ),
    ] {
        let desk = Arc::new(Desk::with_agent().failing(fails));
        let c = call(TransferMode::Warm, Some(desk.clone())).await;
        c.press('0').await;
        c.until(fails, |c| c.has_event("transfer: warm failed"))
            .await;
        assert_eq!(desk.log(), log, "{fails}");
        let back = c.handle.ctx.policy.transfer.back_line.clone();
        if fails != "dial" {
            // Never away: the line is said on the stream the caller is on.
            c.until("the back line", |c| c.bot_lines().contains(&back))
                .await;
            assert!(!c.handle.ctx.is_away());
        }
        let _ = c.handle.supervisor.send_message(SupervisorMsg::Hangup {
            reason: EndReason::Stop,
        });
        if fails == "dial" {
            // Away (back_to_bot was asked): only the carrier's final status ends it.
            let _ = c.handle.supervisor.send_message(SupervisorMsg::Hangup {
                reason: EndReason::Completed,
            });
        }
        assert!(
            matches!(c.ended().await, EndReason::Stop | EndReason::Completed),
            "{fails}"
        );
    }
}

#[tokio::test]
async fn nobody_free_holds_looks_again_then_falls_back_with_a_callback_noted() {
    let desk = Arc::new(Desk::default());
    let c = call(TransferMode::Warm, Some(desk.clone())).await;
    c.press('0').await;
    c.until("fallback", |c| c.has_event("transfer: warm no_agent"))
        .await;
    let log = desk.log();
    assert_eq!(log[..2], ["reserve agent en", "hold"]);
    assert_eq!(log.last().unwrap(), "back");
    let outcome = c.handle.ctx.outcome().unwrap();
    assert_eq!(outcome.slots["callback_requested"], true);
    let _ = c
        .handle
        .supervisor
        .send_message(SupervisorMsg::StreamAttached {
            stream_id: "MZtwo".into(),
        });
    let line = c.handle.ctx.policy.transfer.fallback_line.clone();
    c.until("the fallback line", |c| c.bot_lines().contains(&line))
        .await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_the_agent_rings_abandons_it_and_frees_the_agent() {
    let desk = Arc::new(Desk::with_agent());
    let c = call(TransferMode::Warm, Some(desk.clone())).await;
    c.press('0').await;
    c.until("dialed", |_| desk.log().contains(&"dial asha".to_owned()))
        .await;
    let _ = c.handle.supervisor.send_message(SupervisorMsg::Hangup {
        reason: EndReason::Completed,
    });
    let desk2 = desk.clone();
    assert_eq!(c.ended().await, EndReason::Completed);
    for _ in 0..100 {
        if desk2.log().contains(&"release".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(desk2.log()[3..], ["hang_up CAleg", "release"]);
}

#[tokio::test]
async fn cold_forwards_and_without_call_control_the_bot_carries_on() {
    let desk = Arc::new(Desk::default());
    let c = call(TransferMode::Cold, Some(desk.clone())).await;
    c.press('0').await;
    assert_eq!(c.ended().await, EndReason::Transferred);
    assert_eq!(desk.log(), ["cold +14155550199"]);

    let c = call(TransferMode::Warm, None).await;
    c.press('0').await;
    c.until("unsupported", |c| c.has_event("transfer: warm unsupported"))
        .await;
    let back = c.handle.ctx.policy.transfer.back_line.clone();
    c.until("the back line", |c| c.bot_lines().contains(&back))
        .await;
    assert!(!c.handle.ctx.is_away());
}

#[tokio::test]
async fn a_caller_who_declined_the_transcript_is_handed_off_without_their_words() {
    let mut p = policy(TransferMode::Warm);
    p.rules.consent.mode = hark_actors::policy::ConsentMode::Required;
    p.rules.consent.covers = vec![
        hark_actors::policy::ConsentCovers::Recording,
        hark_actors::policy::ConsentCovers::Transcript,
    ];
    let desk = Arc::new(Desk::with_agent());
    let c = call_with(p, true, Some(desk.clone())).await;
    c.press('2').await; // no
    c.until("declined", |c| !c.handle.ctx.consent.transcript_allowed())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.press('0').await;
    c.until("dialed", |_| desk.log().contains(&"dial asha".to_owned()))
        .await;
    let handoff = desk.handoff.lock().unwrap().clone().unwrap();
    assert!(handoff.transcript.is_empty(), "{:?}", handoff.transcript);
    assert_eq!(
        (handoff.summary.as_str(), handoff.summary_source),
        ("Transfer for agent.", "template")
    );
}
