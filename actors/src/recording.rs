//! The call's recording tap: two channels on one timeline, the caller as
//! received and the bot as the caller heard it.
//!
//! The call path only copies bytes: each 20 ms of caller audio and each
//! chunk the bot sends is copied into a short window, one per channel, and
//! every 500 ms the oldest block goes, interleaved (caller left, bot
//! right), to a [`RecordingWriter`] (the runtime appends it to a file; encoding
//! to Opus happens after the call, off the call path). The window is at
//! most [`MAX_WINDOW`] long, so a recorded call holds a bounded amount of
//! memory however long it lasts.
//!
//! The bot's audio is placed where it plays: the carrier plays chunks in
//! order, from when they are sent or when the one before ends. Audio is
//! sent a little ahead (`playback_lead_ms`), so on `clear` the part not yet
//! played is still in the window and is erased: what a `clear` cut is not
//! in the recording. While a sensitive slot is being taken both channels
//! are silent.
//!
//! Nothing is recorded before [`Recording::start`] (the caller's yes, or
//! the call's start under `recording = "always"`), and a call that never
//! starts its recording leaves nothing anywhere, not even a file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::CallIds;
use crate::ulaw::SILENCE;

/// Samples per second (μ-law 8 kHz).
pub const RATE: u64 = 8000;
/// Samples per block handed to the writer (500 ms).
pub const BLOCK: u64 = RATE / 2;
/// The longest window held in memory (stereo: 16 KB a second).
pub const MAX_WINDOW: u64 = 8 * RATE;

/// Where recordings go (the runtime: files, then the encoder and storage).
pub trait RecordingSink: Send + Sync {
    /// Starts the recording of a call; `None` when it cannot be started
    /// (the sink says why in its log and metrics; the call goes on).
    fn begin(&self, ids: &CallIds, started_at_ms: i64) -> Option<Box<dyn RecordingWriter>>;
}

/// One call's recording, as it is made.
pub trait RecordingWriter: Send {
    /// The next stretch of interleaved stereo μ-law (caller, bot), in order.
    fn write(&mut self, interleaved: Vec<u8>);
    /// The recording is complete: `duration_ms` long.
    fn finish(self: Box<Self>, duration_ms: u64);
}

/// A call's recording: off until started.
pub struct Recording {
    active: AtomicBool,
    tap: Mutex<Option<Tap>>,
    sink: Option<Arc<dyn RecordingSink>>,
}

impl Recording {
    pub fn new(sink: Option<Arc<dyn RecordingSink>>) -> Self {
        Self {
            active: AtomicBool::new(false),
            tap: Mutex::new(None),
            sink,
        }
    }

    fn tap(&self) -> MutexGuard<'_, Option<Tap>> {
        self.tap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the call is being recorded now.
    pub fn is_on(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Starts recording (once; later calls do nothing). False when there is
    /// nowhere to record to.
    pub fn start(&self, ids: &CallIds) -> bool {
        let Some(sink) = &self.sink else {
            return false;
        };
        let mut tap = self.tap();
        if tap.is_some() {
            return true;
        }
        let Some(writer) = sink.begin(ids, crate::records::now_ms()) else {
            return false;
        };
        *tap = Some(Tap::new(Instant::now(), writer));
        self.active.store(true, Ordering::Release);
        true
    }

    /// 20 ms (or any length) of the caller's audio, as received.
    pub fn caller(&self, audio: &[u8]) {
        if !self.is_on() {
            return;
        }
        if let Some(tap) = &mut *self.tap() {
            tap.caller(audio, Instant::now());
        }
    }

    /// A chunk of the bot's audio that starts playing at `plays_from`.
    pub fn bot(&self, audio: &[u8], plays_from: Instant) {
        if !self.is_on() {
            return;
        }
        if let Some(tap) = &mut *self.tap() {
            tap.bot(audio, plays_from, Instant::now());
        }
    }

    /// The caller's audio comes again after time away from the stream (on
    /// hold for a transfer, back on a new stream): the time between is
    /// silence, and what follows lands where it is heard.
    pub fn resume(&self) {
        if let Some(tap) = &mut *self.tap() {
            let now = tap.pos(Instant::now());
            tap.caller_pos = tap.caller_pos.max(now);
        }
    }

    /// The carrier was told to `clear`: the bot's audio from now on was never heard.
    pub fn clear(&self) {
        if !self.is_on() {
            return;
        }
        if let Some(tap) = &mut *self.tap() {
            tap.cut_bot(Instant::now());
        }
    }

    /// A sensitive slot is being taken (`true`) or is done (`false`).
    pub fn sensitive(&self, on: bool) {
        if let Some(tap) = &mut *self.tap() {
            tap.set_sensitive(on, Instant::now());
        }
    }

    /// The call ended: the rest goes to the writer, which completes it.
    pub fn finish(&self) {
        self.active.store(false, Ordering::Release);
        if let Some(tap) = self.tap().take() {
            tap.finish(Instant::now());
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The window: each channel's samples from sample `base` on, kept apart
/// so a frame is one copy; interleaved once per block, at the flush.
struct Tap {
    t0: Instant,
    writer: Box<dyn RecordingWriter>,
    base: u64,
    channels: [Vec<u8>; 2],
    /// Caller samples received since the start.
    caller_pos: u64,
    sensitive: bool,
}

const CALLER: usize = 0;
const BOT: usize = 1;

impl Tap {
    fn new(t0: Instant, writer: Box<dyn RecordingWriter>) -> Self {
        let cap = (2 * BLOCK) as usize + 4096;
        Self {
            t0,
            writer,
            base: 0,
            channels: [Vec::with_capacity(cap), Vec::with_capacity(cap)],
            caller_pos: 0,
            sensitive: false,
        }
    }

    fn pos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.t0);
        d.as_secs() * RATE + u64::from(d.subsec_micros()) * RATE / 1_000_000
    }

    fn caller(&mut self, audio: &[u8], now: Instant) {
        let at = self.caller_pos;
        self.caller_pos += audio.len() as u64;
        if !self.sensitive {
            self.put(CALLER, at, audio);
        }
        self.flush_before(self.pos(now).max(self.caller_pos));
    }

    fn bot(&mut self, audio: &[u8], plays_from: Instant, now: Instant) {
        if !self.sensitive {
            self.put(BOT, self.pos(plays_from), audio);
        }
        self.flush_before(self.pos(now).max(self.caller_pos));
    }

    /// Writes `audio` into `channel` from sample `at`: samples before the
    /// window are late and dropped; the window grows to hold the rest.
    fn put(&mut self, channel: usize, at: u64, audio: &[u8]) {
        let end = at + audio.len() as u64;
        // Bounded: a write past the window's limit pushes its oldest out.
        while end > self.base + MAX_WINDOW {
            self.flush_block();
        }
        let skip = self.base.saturating_sub(at) as usize;
        let Some(audio) = audio.get(skip..) else {
            return;
        };
        let from = (at.max(self.base) - self.base) as usize;
        let to = (end - self.base) as usize;
        let ch = &mut self.channels[channel];
        if ch.len() < to {
            ch.resize(to, SILENCE);
        }
        if let Some(slot) = ch.get_mut(from..to) {
            slot.copy_from_slice(audio);
        }
    }

    /// Erases the bot's channel from `now` on.
    fn cut_bot(&mut self, now: Instant) {
        let from = (self.pos(now).max(self.base) - self.base) as usize;
        if let Some(rest) = self.channels[BOT].get_mut(from..) {
            rest.fill(SILENCE);
        }
    }

    fn set_sensitive(&mut self, on: bool, now: Instant) {
        if on && !self.sensitive {
            // The bot's audio already placed past now is not heard in clear.
            self.cut_bot(now);
        }
        self.sensitive = on;
    }

    /// Hands whole blocks that end a block or more before `pos` (late
    /// caller frames still land) to the writer.
    fn flush_before(&mut self, pos: u64) {
        while pos >= self.base + 2 * BLOCK {
            self.flush_block();
        }
    }

    fn flush_block(&mut self) {
        self.flush(BLOCK as usize);
    }

    /// Interleaves the first `n` samples of both channels to the writer.
    fn flush(&mut self, n: usize) {
        for ch in &mut self.channels {
            if ch.len() < n {
                ch.resize(n, SILENCE);
            }
        }
        let mut block = vec![SILENCE; 2 * n];
        let [caller, bot] = &self.channels;
        for (pair, (c, b)) in block.chunks_exact_mut(2).zip(caller.iter().zip(bot)) {
            pair[0] = *c;
            pair[1] = *b;
        }
        for ch in &mut self.channels {
            ch.drain(..n);
        }
        self.base += n as u64;
        self.writer.write(block);
    }

    fn finish(mut self, now: Instant) {
        let end = self.pos(now).max(self.caller_pos).max(self.base);
        while end >= self.base + BLOCK {
            self.flush_block();
        }
        let rest = (end - self.base) as usize;
        if rest > 0 {
            self.flush(rest);
        }
        let duration = Duration::from_micros(end * 1_000_000 / RATE);
        self.writer.finish(duration.as_millis() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Got {
        bytes: Vec<u8>,
        finished: Option<u64>,
        begun: usize,
    }

    struct Sink(Arc<Mutex<Got>>);
    struct Writer(Arc<Mutex<Got>>);

    impl RecordingSink for Sink {
        fn begin(&self, _: &CallIds, _: i64) -> Option<Box<dyn RecordingWriter>> {
            self.0.lock().unwrap().begun += 1;
            Some(Box::new(Writer(Arc::clone(&self.0))))
        }
    }
    impl RecordingWriter for Writer {
        fn write(&mut self, interleaved: Vec<u8>) {
            self.0.lock().unwrap().bytes.extend(interleaved);
        }
        fn finish(self: Box<Self>, duration_ms: u64) {
            self.0.lock().unwrap().finished = Some(duration_ms);
        }
    }

    fn ids() -> CallIds {
        CallIds {
            carrier: "twilio",
            call_id: "CA1".into(),
            stream_id: "MZ1".into(),
        }
    }

    fn recording() -> (Recording, Arc<Mutex<Got>>) {
        let got = Arc::new(Mutex::new(Got::default()));
        (Recording::new(Some(Arc::new(Sink(Arc::clone(&got))))), got)
    }

    fn channel(bytes: &[u8], c: usize) -> Vec<u8> {
        bytes.iter().skip(c).step_by(2).copied().collect()
    }

    /// Sends `secs` of caller audio (byte `b`) in real time, 20 ms a frame.
    async fn caller_for(rec: &Recording, ms: u64, b: u8) {
        for _ in 0..ms / 20 {
            rec.caller(&[b; 160]);
            tokio::time::advance(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_kept_before_start_or_without_a_sink() {
        let (rec, got) = recording();
        rec.caller(&[1; 160]);
        rec.bot(&[2; 800], Instant::now());
        rec.finish();
        let got = got.lock().unwrap();
        assert_eq!((got.begun, got.bytes.len(), got.finished), (0, 0, None));
        let none = Recording::new(None);
        assert!(!none.start(&ids()));
        assert!(!none.is_on());
    }

    #[tokio::test(start_paused = true)]
    async fn both_channels_land_where_they_were_heard_and_the_duration_matches() {
        let (rec, got) = recording();
        assert!(rec.start(&ids()));
        // 1 s of caller; the bot plays 0.5 s from 1.2 s (sent a little ahead).
        caller_for(&rec, 1000, 10).await;
        rec.bot(&[20; 4000], Instant::now() + Duration::from_millis(200));
        caller_for(&rec, 3000, 11).await;
        rec.finish();
        let got = got.lock().unwrap();
        assert_eq!(got.finished, Some(4000));
        assert_eq!(got.bytes.len(), 2 * 32_000);
        let caller = channel(&got.bytes, 0);
        let bot = channel(&got.bytes, 1);
        assert!(caller[..8000].iter().all(|&b| b == 10));
        assert!(caller[8000..].iter().all(|&b| b == 11));
        assert!(bot[..9600].iter().all(|&b| b == SILENCE));
        assert!(bot[9600..13_600].iter().all(|&b| b == 20));
        assert!(bot[13_600..].iter().all(|&b| b == SILENCE));
    }

    #[tokio::test(start_paused = true)]
    async fn time_away_from_the_stream_is_silence_and_the_caller_lands_after_it() {
        let (rec, got) = recording();
        assert!(rec.start(&ids()));
        caller_for(&rec, 1000, 10).await;
        // 2 s on hold: no stream, no frames.
        tokio::time::advance(Duration::from_secs(2)).await;
        rec.resume();
        caller_for(&rec, 1000, 11).await;
        rec.finish();
        let got = got.lock().unwrap();
        assert_eq!(got.finished, Some(4000));
        let caller = channel(&got.bytes, 0);
        assert_eq!(caller.len(), 32_000);
        assert!(caller[..8000].iter().all(|&b| b == 10));
        assert!(caller[8000..24_000].iter().all(|&b| b == SILENCE));
        assert!(caller[24_000..].iter().all(|&b| b == 11));
    }

    #[tokio::test(start_paused = true)]
    async fn a_clear_erases_the_bot_audio_not_yet_played() {
        let (rec, got) = recording();
        rec.start(&ids());
        // 1 s of bot audio sent at 0 plays 0..1 s; cleared at 0.4 s.
        rec.bot(&[20; 8000], Instant::now());
        caller_for(&rec, 400, 10).await;
        rec.clear();
        caller_for(&rec, 1600, 10).await;
        rec.finish();
        let bot = channel(&got.lock().unwrap().bytes, 1);
        assert!(bot[..3200].iter().all(|&b| b == 20));
        assert!(
            bot[3200..].iter().all(|&b| b == SILENCE),
            "audio after clear"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sensitive_stretch_is_silent_in_both_channels() {
        let (rec, got) = recording();
        rec.start(&ids());
        caller_for(&rec, 1000, 10).await;
        rec.sensitive(true);
        rec.bot(&[20; 4000], Instant::now());
        caller_for(&rec, 1000, 12).await;
        rec.sensitive(false);
        caller_for(&rec, 1000, 13).await;
        rec.finish();
        let bytes = &got.lock().unwrap().bytes;
        let (caller, bot) = (channel(bytes, 0), channel(bytes, 1));
        assert!(caller[8000..16_000].iter().all(|&b| b == SILENCE));
        assert!(caller[16_000..].iter().all(|&b| b == 13));
        assert!(bot.iter().all(|&b| b == SILENCE));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_over_a_long_call() {
        let (rec, got) = recording();
        rec.start(&ids());
        for _ in 0..60 {
            caller_for(&rec, 1000, 10).await;
            let window = rec.tap().as_ref().map_or(0, |t| t.channels[0].len());
            assert!(window as u64 <= MAX_WINDOW);
            assert!(window as u64 <= 2 * BLOCK + 160, "{window}");
        }
        rec.finish();
        assert_eq!(got.lock().unwrap().bytes.len(), 2 * 60 * 8000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_far_ahead_pushes_old_blocks_out_instead_of_growing() {
        let (rec, got) = recording();
        rec.start(&ids());
        rec.bot(&[20; 160], Instant::now() + Duration::from_secs(20));
        let window = rec.tap().as_ref().map_or(0, |t| t.channels[1].len());
        assert!(window as u64 <= MAX_WINDOW);
        rec.finish();
        assert!(got.lock().unwrap().finished.is_some());
    }
}
