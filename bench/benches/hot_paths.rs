//! Hark's hot paths, measured with criterion:
//!
//! - `inbound_frame`: one Twilio `media` message → JSON parse, base64 decode,
//!   μ-law decode, VAD decision (and each stage alone);
//! - `outbound_chunk_100ms`: one 100 ms chunk (what `MediaOut` sends per
//!   `media` message) → μ-law encode, base64, JSON;
//! - `actor_hop`: one ractor message from send to handled;
//! - `barge_in`: a whole call tree mid-reply, from the VAD's barge-in event
//!   to the `clear` queued for Twilio.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a panic is the failure report

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use hark_actors::CallSettings;
use hark_actors::policy::{PolicyFile, VadMode};
use hark_actors::ulaw::{self, FRAME_SAMPLES};
use hark_actors::vad::FrameClassifier;
use hark_actors::{CallArgs, CallIds, Capabilities, Command, Providers, SupervisorMsg, start_call};
use hark_runtime::twilio::messages::{MediaBody, OutMedia};
use hark_runtime::twilio::{HarkMessage, StrNum, TwilioEvent};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};

const SPEECH: &[u8] = include_bytes!("../../tests/fixtures/speech/order.ulaw");

/// Real Twilio `media` messages carrying real speech.
fn media_messages() -> Vec<String> {
    SPEECH
        .chunks_exact(FRAME_SAMPLES)
        .enumerate()
        .map(|(i, frame)| {
            let payload = STANDARD.encode(frame);
            TwilioEvent::Media {
                sequence_number: StrNum(i as u64 + 2),
                media: MediaBody {
                    track: "inbound".into(),
                    chunk: StrNum(i as u64 + 1),
                    timestamp: StrNum(i as u64 * 20),
                    payload: payload.as_str().into(),
                },
                stream_sid: "MZ18ad3ab5a668481ce02b83e7395059f0".into(),
            }
            .to_json()
        })
        .collect()
}

fn inbound(c: &mut Criterion) {
    let msgs = media_messages();
    let mut g = c.benchmark_group("inbound_frame");
    let mut classifier = FrameClassifier::new(VadMode::Aggressive, -55.0);
    let mut decoded = Vec::with_capacity(FRAME_SAMPLES);
    let mut i = 0;
    g.bench_function("full", |b| {
        b.iter(|| {
            let msg = &msgs[i % msgs.len()];
            i += 1;
            let Ok(TwilioEvent::Media { media, .. }) = TwilioEvent::parse(msg) else {
                panic!("not media")
            };
            decoded.clear();
            STANDARD
                .decode_vec(media.payload.as_bytes(), &mut decoded)
                .unwrap();
            let mut pcm = [0i16; FRAME_SAMPLES];
            ulaw::decode_into(&decoded[..FRAME_SAMPLES], &mut pcm);
            black_box(classifier.is_speech(&pcm))
        })
    });
    g.bench_function("json_parse", |b| {
        b.iter(|| {
            i += 1;
            black_box(TwilioEvent::parse(&msgs[i % msgs.len()]).is_ok())
        })
    });
    let payloads: Vec<String> = SPEECH
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| STANDARD.encode(f))
        .collect();
    g.bench_function("base64_decode", |b| {
        b.iter(|| {
            i += 1;
            decoded.clear();
            STANDARD
                .decode_vec(payloads[i % payloads.len()].as_bytes(), &mut decoded)
                .unwrap();
            black_box(decoded.len())
        })
    });
    let frames: Vec<&[u8]> = SPEECH.chunks_exact(FRAME_SAMPLES).collect();
    g.bench_function("ulaw_decode", |b| {
        b.iter(|| {
            i += 1;
            let mut pcm = [0i16; FRAME_SAMPLES];
            ulaw::decode_into(frames[i % frames.len()], &mut pcm);
            black_box(pcm[7])
        })
    });
    let pcms: Vec<[i16; FRAME_SAMPLES]> = frames
        .iter()
        .map(|f| {
            let mut pcm = [0i16; FRAME_SAMPLES];
            ulaw::decode_into(f, &mut pcm);
            pcm
        })
        .collect();
    g.bench_function("vad", |b| {
        b.iter(|| {
            i += 1;
            black_box(classifier.is_speech(&pcms[i % pcms.len()]))
        })
    });
    // Only while an outbound callee is not yet known to be a person.
    let mut beeps = hark_actors::beep::BeepDetector::new();
    g.bench_function("beep_detector", |b| {
        b.iter(|| {
            i += 1;
            black_box(beeps.push(&pcms[i % pcms.len()]))
        })
    });
    g.finish();
}

fn outbound(c: &mut Criterion) {
    const CHUNK: usize = 5 * FRAME_SAMPLES;
    let pcm: Vec<i16> = SPEECH[..CHUNK].iter().map(|&b| ulaw::decode(b)).collect();
    let mut encoded = [0u8; CHUNK];
    let mut b64 = String::with_capacity(1200);
    let mut json = Vec::with_capacity(1400);
    c.bench_function("outbound_chunk_100ms", |b| {
        b.iter(|| {
            ulaw::encode_into(black_box(&pcm), &mut encoded);
            b64.clear();
            STANDARD.encode_string(encoded, &mut b64);
            HarkMessage::Media {
                stream_sid: "MZ18ad3ab5a668481ce02b83e7395059f0".into(),
                media: OutMedia {
                    payload: b64.as_str().into(),
                },
            }
            .write_json(&mut json);
            black_box(json.len())
        })
    });
}

/// An actor that takes frames and answers a flush once it has seen them all.
struct Counter;

enum CounterMsg {
    Frame([u8; FRAME_SAMPLES]),
    Flush(oneshot::Sender<u64>),
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CounterMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        n: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Frame(f) => *n += f[0] as u64,
            CounterMsg::Flush(tx) => {
                let _ = tx.send(*n);
            }
        }
        Ok(())
    }
}

/// Runs `f` as a task on the runtime's workers, as Hark's own code runs
/// (`block_on` would drive it from outside and pay a thread wake-up per hop).
fn on_runtime<F>(rt: &tokio::runtime::Runtime, f: F) -> Duration
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    rt.block_on(rt.spawn(f)).unwrap()
}

fn actor_hop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (actor, _) = rt.block_on(Counter::spawn(None, Counter, ())).unwrap();
    let mut g = c.benchmark_group("actor_hop");
    // Sender and actor on different tasks, one message in flight at a time:
    // send, wake, handle — what each per-frame hop in a call costs.
    g.bench_function("one_frame", |b| {
        b.iter_custom(|iters| {
            let actor = actor.clone();
            on_runtime(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, rx) = oneshot::channel();
                    actor
                        .send_message(CounterMsg::Frame([1; FRAME_SAMPLES]))
                        .unwrap();
                    actor.send_message(CounterMsg::Flush(tx)).unwrap();
                    black_box(rx.await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    // Many frames queued back to back: the mailbox's throughput.
    g.bench_function("pipelined", |b| {
        b.iter_custom(|iters| {
            let actor = actor.clone();
            on_runtime(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    actor
                        .send_message(CounterMsg::Frame([1; FRAME_SAMPLES]))
                        .unwrap();
                }
                let (tx, rx) = oneshot::channel();
                actor.send_message(CounterMsg::Flush(tx)).unwrap();
                black_box(rx.await.unwrap());
                start.elapsed()
            })
        })
    });
    g.finish();
    actor.stop(None);
}

fn barge_in(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut policy = PolicyFile {
        greeting: String::new(),
        ..PolicyFile::default()
    };
    policy.sim.stt.final_delay_ms = 0;
    policy.sim.llm.first_token_ms = 0;
    policy.sim.llm.tokens_per_second = 0.0;
    policy.sim.tts.first_byte_ms = 0;
    policy.sim.tts.real_time_factor = 0.0;
    policy.sim.llm.template = "This is a long reply. ".repeat(20);
    let policy = Arc::new(policy);
    let (tx, rx) = mpsc::channel(4096);
    let call = rt
        .block_on(start_call(CallArgs {
            placed: None,
            resumed: Default::default(),
            capabilities: Capabilities::TWILIO,
            ids: CallIds {
                call_id: "CAbench".into(),
                stream_id: "MZbench".into(),
                carrier: "bench",
            },
            providers: Providers::simulated(&policy),
            policy,
            settings: CallSettings::default(),
            outbound: tx,
            transfer: None,
            fault: None,
            records: Arc::new(Discard),
            record_base: 0,
            ask_consent: false,
            recordings: None,
            languages: Default::default(),
        }))
        .unwrap();
    let call = Arc::new(call);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    c.bench_function("barge_in/event_to_clear", |b| {
        b.iter_custom(|iters| {
            let (call, rx) = (Arc::clone(&call), Arc::clone(&rx));
            on_runtime(&rt, async move {
                let mut rx = rx.lock().await;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A reply is playing...
                    call.supervisor
                        .send_message(SupervisorMsg::Utterance {
                            text: "hello".into(),
                            languages: Vec::new(),
                        })
                        .unwrap();
                    while !matches!(rx.recv().await, Some(Command::Audio(_))) {}
                    // ...give MediaOut time to report playback started...
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    // ...and the caller talks over it.
                    let start = Instant::now();
                    call.supervisor
                        .send_message(SupervisorMsg::BargeIn {
                            at: tokio::time::Instant::now(),
                        })
                        .unwrap();
                    while rx.recv().await != Some(Command::Clear) {}
                    total += start.elapsed();
                    while rx.try_recv().is_ok() {}
                }
                total
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = inbound, outbound, actor_hop, barge_in
}
criterion_main!(benches);

/// The benchmark keeps no records.
struct Discard;

impl hark_actors::records::RecordSink for Discard {
    fn send(&self, _record: hark_actors::records::Record) {}
}
