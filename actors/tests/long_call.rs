//! A long call costs what a short one does: the heap a call holds after
//! 200 turns is what it held after 20. Measured with a counting allocator
//! (bytes live on the heap), on a paused clock so 200 turns take seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use hark_actors::CallSettings;
use hark_actors::media_in::{deliver_media, deliver_played};
use hark_actors::policy::PolicyFile;
use hark_actors::ulaw;
use hark_actors::{CallArgs, CallIds, Command, Providers, start_call};
use tokio::sync::mpsc;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `realloc` itself.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn speech(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/speech/{name}.ulaw",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A caller speaking a turn, then listening to the whole reply (echoing
/// marks, as Twilio does), `turns` times.
async fn talk(
    handle: &hark_actors::CallHandle,
    out: &mut mpsc::Receiver<Command>,
    seq: &mut u64,
    turns: usize,
    words: &[u8],
) {
    let silence = [ulaw::SILENCE; 160];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..turns {
        // Speak, then 4 s of silence: endpointing, the reply and its playback.
        for frame in words
            .chunks(160)
            .chain(std::iter::repeat_n(&silence[..], 200))
        {
            tick.tick().await;
            *seq += 1;
            deliver_media(&handle.ctx, *seq, frame);
            while let Ok(msg) = out.try_recv() {
                if let Command::Checkpoint(id) = msg {
                    *seq += 1;
                    deliver_played(&handle.ctx, *seq, id);
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_calls_memory_does_not_grow_with_its_length() {
    let mut policy = PolicyFile::default();
    policy.sim.stt.final_delay_ms = 50;
    policy.sim.llm.first_token_ms = 20;
    policy.sim.llm.tokens_per_second = 0.0;
    policy.sim.tts.first_byte_ms = 10;
    policy.sim.tts.real_time_factor = 0.0;
    policy.sim.tts.ms_per_char = 10;
    policy.greeting = "Hello.".into();
    let policy = Arc::new(policy);
    // Records are handed on as they happen; a sink that keeps them would
    // grow by design, so this one drops them.
    struct Discard;
    impl hark_actors::records::RecordSink for Discard {
        fn send(&self, _: hark_actors::records::Record) {}
    }
    let (tx, mut out) = mpsc::channel(512);
    let handle = start_call(CallArgs {
        placed: None,
        resumed: Default::default(),
        capabilities: hark_actors::Capabilities::TWILIO,
        ids: CallIds {
            call_id: "CAlong".into(),
            stream_id: "MZlong".into(),
            carrier: "test",
        },
        providers: Providers::simulated(&policy),
        policy: Arc::clone(&policy),
        settings: CallSettings::default(),
        outbound: tx,
        transfer: None,
        fault: None,
        records: Arc::new(Discard),
        record_base: 0,
        ask_consent: false,
        recordings: None,
        languages: Default::default(),
    })
    .await
    .unwrap();
    let words = speech("yes");
    let mut seq = 1;
    talk(&handle, &mut out, &mut seq, 60, &words).await;
    let after_60 = LIVE.load(Ordering::Relaxed);
    let turns_60 = handle.ctx.history().turns().len();
    talk(&handle, &mut out, &mut seq, 240, &words).await;
    let after_300 = LIVE.load(Ordering::Relaxed);
    let turns_300 = handle.ctx.history().turns().len();
    // The conversation went on (replies were heard and answered)...
    assert!(turns_300 >= 20, "{turns_300} turns in memory");
    // ...and what the call keeps stayed put: 240 more turns, not 240 × ~1 KB.
    let grew = after_300 - after_60;
    assert!(
        grew < 16 * 1024,
        "the call's heap grew by {grew} bytes over 240 turns ({turns_60} → {turns_300} turns kept)"
    );
}
