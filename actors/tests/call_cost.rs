//! The regression guard for what a call costs: heap held per call at the
//! load's peak, allocations and bytes allocated per call-second, counted
//! exactly (a counting allocator, a paused clock, one thread) for 20 calls of
//! the load test's barge-in pattern through the real call tree, and compared
//! with the figures recorded in `call_cost.toml`.
//!
//! Counts, not seconds: the same code gives the same counts on any machine,
//! however busy, so a 10% tolerance catches a regression that wall-clock
//! CPU or RSS (±15% from run to run on a shared 2-core VM) would hide.
//! Re-record after an intended change with
//! `HARK_RECORD_COST=1 cargo test -p hark-actors --test call_cost`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::time::Duration;

use hark_actors::CallSettings;
use hark_actors::media_in::{deliver_media, deliver_played};
use hark_actors::policy::PolicyFile;
use hark_actors::providers::{ProviderError, SttProvider, SttSession};
use hark_actors::records::{Record, RecordSink};
use hark_actors::{CallArgs, CallIds, Command, EndReason, Providers, SupervisorMsg, start_call};
use hark_actors::{CallHandle, ulaw};
use tokio::sync::mpsc;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
    PEAK.fetch_max(live, Ordering::Relaxed);
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(by as u64, Ordering::Relaxed);
}

// SAFETY: defers to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new allocation of `new_size` replacing the old one.
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        grew(new_size);
        // SAFETY: as for `realloc` itself.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CALLS: usize = 20;
const SECONDS: u64 = 30;
/// How far a figure may rise above its recorded value before the test fails.
const TOLERANCE: f64 = 0.10;

fn speech(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/speech/{name}.ulaw",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Records are handed on as they happen; the runtime's writer owns them
/// from there (and is not part of the call tree measured here).
struct Discard;
impl RecordSink for Discard {
    fn send(&self, _: Record) {}
}

/// `policies/loadtest.toml`'s simulated providers: zero latency.
fn policy() -> Arc<PolicyFile> {
    let path = format!("{}/../policies/loadtest.toml", env!("CARGO_MANIFEST_DIR"));
    Arc::new(PolicyFile::load(std::path::Path::new(&path)).unwrap())
}

/// The load test's barge-in caller: says "order", hears the reply start,
/// cuts in 600 ms later with "interrupt", listens, and again — echoing
/// every mark as Twilio's player does.
async fn caller(
    handle: CallHandle,
    mut out: mpsc::Receiver<Command>,
    until: tokio::time::Instant,
) -> (u32, u32) {
    let (mut media, mut clears) = (0u32, 0u32);
    let order = speech("order");
    let interrupt = speech("interrupt");
    let silence = [ulaw::SILENCE; 160];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 1u64;
    let mut script: Vec<&[u8]> = Vec::new();
    while tokio::time::Instant::now() < until {
        if script.is_empty() {
            script.extend(order.chunks(160));
            // Endpointing (500 ms), then the reply plays 600 ms before the cut-in.
            script.extend(std::iter::repeat_n(&silence[..], 55));
            script.extend(interrupt.chunks(160));
            script.extend(std::iter::repeat_n(&silence[..], 150));
            script.reverse();
        }
        let Some(frame) = script.pop() else { break };
        tick.tick().await;
        seq += 1;
        deliver_media(&handle.ctx, seq, frame);
        while let Ok(msg) = out.try_recv() {
            match msg {
                Command::Checkpoint(id) => {
                    seq += 1;
                    deliver_played(&handle.ctx, seq, id);
                }
                Command::Audio(_) => media += 1,
                Command::Clear => clears += 1,
                Command::Close { .. } => {}
            }
        }
    }
    let _ = handle.supervisor.send_message(SupervisorMsg::Hangup {
        reason: EndReason::Stop,
    });
    let _ = handle.done.await;
    (media, clears)
}

/// The simulated STT as a network one: its sessions "can drop", so the
/// call keeps each utterance for a replay, as it does with Deepgram.
struct Droppable(Arc<dyn SttProvider>);

#[async_trait::async_trait]
impl SttProvider for Droppable {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn connect(&self) -> Result<SttSession, ProviderError> {
        self.0.connect().await
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Costs {
    /// Simulated providers, as `policies/loadtest.toml` runs them.
    simulated: Cost,
    /// The same with a streaming STT whose sessions can drop: each
    /// utterance is kept until its transcript, for a replay.
    replaying_stt: Cost,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cost {
    /// Heap held per call at the peak, bytes.
    heap_per_call_bytes: u64,
    /// Allocations per call-second.
    allocations_per_call_second: u64,
    /// Bytes allocated per call-second.
    bytes_allocated_per_call_second: u64,
}

/// Runs `CALLS` barge-in callers for `SECONDS` and counts.
async fn measure(replaying: bool) -> Cost {
    let policy = policy();
    let mut providers = Providers::simulated(&policy);
    if replaying {
        providers.stt = Arc::new(Droppable(Arc::clone(&providers.stt)));
    }
    let start_live = LIVE.load(Ordering::Relaxed);
    PEAK.store(start_live, Ordering::Relaxed);
    let (allocs0, bytes0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
    let mut callers = Vec::new();
    for i in 0..CALLS {
        let (tx, out) = mpsc::channel(512);
        let handle = start_call(CallArgs {
            placed: None,
            resumed: Default::default(),
            capabilities: hark_actors::Capabilities::TWILIO,
            ids: CallIds {
                call_id: format!("CA{i:032x}"),
                stream_id: format!("MZ{i:032x}"),
                carrier: "test",
            },
            providers: providers.clone(),
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
        callers.push(tokio::spawn(caller(handle, out, until)));
    }
    for c in callers {
        // The calls were conversations: replies played and were cut in on
        // (a call that did nothing would cost nothing).
        let (media, clears) = c.await.unwrap();
        assert!(
            media >= 50 && clears >= 5,
            "{media} media chunks, {clears} clears"
        );
    }
    let calls = CALLS as u64;
    Cost {
        heap_per_call_bytes: ((PEAK.load(Ordering::Relaxed) - start_live).max(0) as u64) / calls,
        allocations_per_call_second: (ALLOCS.load(Ordering::Relaxed) - allocs0) / calls / SECONDS,
        bytes_allocated_per_call_second: (BYTES.load(Ordering::Relaxed) - bytes0) / calls / SECONDS,
    }
}

/// The figures of `now` that rose past the tolerance over `then`.
fn regressions(what: &str, now: &Cost, then: &Cost) -> Vec<String> {
    let over = |name: &str, now: u64, then: u64| {
        let limit = then as f64 * (1.0 + TOLERANCE);
        (now as f64 > limit).then(|| {
            format!(
                "{what}.{name}: {now} > {then} recorded (+{:.1}%)",
                (now as f64 / then as f64 - 1.0) * 100.0
            )
        })
    };
    [
        over(
            "heap_per_call_bytes",
            now.heap_per_call_bytes,
            then.heap_per_call_bytes,
        ),
        over(
            "allocations_per_call_second",
            now.allocations_per_call_second,
            then.allocations_per_call_second,
        ),
        over(
            "bytes_allocated_per_call_second",
            now.bytes_allocated_per_call_second,
            then.bytes_allocated_per_call_second,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_calls_heap_and_allocations_stay_within_the_recorded_figures() {
    let measured = Costs {
        simulated: measure(false).await,
        replaying_stt: measure(true).await,
    };
    eprintln!("measured: {measured:#?}");

    let path = format!("{}/tests/call_cost.toml", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("HARK_RECORD_COST").is_some() {
        let header = "# What a call costs, recorded by\n# `HARK_RECORD_COST=1 cargo test -p hark-actors --test call_cost`;\n# the test fails when a figure rises more than 10% above these.\n";
        std::fs::write(
            &path,
            format!("{header}{}", toml::to_string(&measured).unwrap()),
        )
        .unwrap();
        return;
    }
    let recorded: Costs = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut found = regressions("simulated", &measured.simulated, &recorded.simulated);
    found.extend(regressions(
        "replaying_stt",
        &measured.replaying_stt,
        &recorded.replaying_stt,
    ));
    assert!(
        found.is_empty(),
        "a call costs more than recorded in {path}:\n  {}\n(if intended, re-record and say why in the commit)",
        found.join("\n  ")
    );
}
