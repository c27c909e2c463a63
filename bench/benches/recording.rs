//! What recording costs, measured with criterion:
//!
//! - `recording/tap`: one 20 ms caller frame into a recorded call's tap (the
//!   only per-frame work on the call path), and the same call unrecorded;
//! - `recording/encode_10s`: ten seconds of a two-channel call (real speech
//!   on both) → Ogg Opus, the work the low-priority pool does after a call —
//!   divide by ten for the cost per recorded call-second;
//! - `recording/seal_10s`: the same ten seconds' Ogg Opus sealed (AES-256-GCM
//!   in 64 KiB chunks).

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a panic is the failure report

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use hark_actors::CallIds;
use hark_actors::recording::{Recording, RecordingSink, RecordingWriter};
use hark_runtime::pii::Pii;
use hark_runtime::recordings::{opus, sealed};

const CALLER: &[u8] = include_bytes!("../../tests/fixtures/speech/order.ulaw");
const BOT: &[u8] = include_bytes!("../../tests/fixtures/speech/hours.ulaw");

/// `secs` of interleaved stereo μ-law: caller and bot speech, looped.
fn call(secs: usize) -> Vec<u8> {
    let n = secs * 8000;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        out.push(CALLER[i % CALLER.len()]);
        out.push(BOT[i % BOT.len()]);
    }
    out
}

struct Discard;
struct DiscardWriter;
impl RecordingSink for Discard {
    fn begin(&self, _: &CallIds, _: i64) -> Option<Box<dyn RecordingWriter>> {
        Some(Box::new(DiscardWriter))
    }
}
impl RecordingWriter for DiscardWriter {
    fn write(&mut self, interleaved: Vec<u8>) {
        black_box(interleaved);
    }
    fn finish(self: Box<Self>, _: u64) {}
}

fn tap(c: &mut Criterion) {
    let ids = CallIds {
        carrier: "twilio",
        call_id: "CA1".into(),
        stream_id: "MZ1".into(),
    };
    let frames: Vec<&[u8]> = CALLER.chunks_exact(160).collect();
    let mut g = c.benchmark_group("recording");
    let on = Recording::new(Some(std::sync::Arc::new(Discard)));
    on.start(&ids);
    let mut i = 0;
    g.bench_function("tap_frame_recorded", |b| {
        b.iter(|| {
            on.caller(black_box(frames[i % frames.len()]));
            i += 1;
        })
    });
    let off = Recording::new(None);
    g.bench_function("tap_frame_unrecorded", |b| {
        b.iter(|| {
            off.caller(black_box(frames[i % frames.len()]));
            i += 1;
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let raw = call(10);
    let mut ogg = Vec::new();
    opus::encode(raw.as_slice(), &mut ogg, opus::DEFAULT_COMPLEXITY).unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let pii = Pii::from_spec(&format!("k1:{key}"), &key).unwrap();
    let mut g = c.benchmark_group("recording");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("encode_10s", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(40_000);
            opus::encode(
                black_box(raw.as_slice()),
                &mut out,
                opus::DEFAULT_COMPLEXITY,
            )
            .unwrap();
            out
        })
    });
    g.bench_function("seal_10s", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(ogg.len() + 1024);
            sealed::seal(&pii, black_box(ogg.as_slice()), &mut out).unwrap();
            out
        })
    });
    g.finish();
}

criterion_group!(benches, tap, encode);
criterion_main!(benches);
