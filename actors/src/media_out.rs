//! `MediaOut`: the bot's audio to the carrier.
//!
//! Audio is paced a little ahead of real-time playback (`playback_lead_ms`),
//! one audio command per synthesized chunk (≤ 100 ms), with a checkpoint
//! after every chunk. A carrier that reports playback (Twilio's marks)
//! answers a checkpoint once the audio before it has played, which is how
//! Hark knows what the caller heard. For one that does not (Asterisk,
//! WebRTC) the checkpoint stays in Hark and counts as played when the
//! real-time clock says its audio has: the same bookkeeping, estimated.
//!
//! Cancellation invariant: the queue only ever holds audio of the current
//! turn. On cancel the queue is emptied *before* `clear` is queued to the
//! socket, and audio of an older generation is dropped on arrival, so no
//! `media` of a cancelled turn can follow its `clear`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Histogram};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::context::CallContext;
use crate::history::Heard;
use crate::metrics as m;
use crate::protocol::{Checkpoint, ChildKind, Command, Generation, MediaOutMsg, SupervisorMsg};
use crate::ulaw::FRAME_SAMPLES;
use crate::util::AbortOnDrop;

/// If Twilio has not echoed a turn's marks this long after its audio should
/// have finished playing, the turn is taken as played (marks can be lost).
const MARK_GRACE: Duration = Duration::from_secs(3);

struct Queued {
    index: u32,
    chunk: Bytes,
    /// Released (back to the call's audio budget) once the chunk is sent or dropped.
    _permit: OwnedSemaphorePermit,
}

struct PendingMark {
    id: Checkpoint,
    index: u32,
    /// Frames of sentence `index` played once this mark is echoed.
    frames: u32,
    /// When the audio before it will have played, by the real-time clock.
    plays_at: Instant,
}

/// Playback of one bot turn.
struct Turn {
    generation: Generation,
    speech_end: Option<Instant>,
    started: bool,
    audio_done: bool,
    finished: bool,
    /// Frames received so far per sentence.
    sentence_frames: Vec<u32>,
    /// (sentence, frames of it) sent so far.
    sent: (u32, u32),
    /// (sentence, frames of it) confirmed played by echoed marks.
    played: (u32, u32),
    /// The caller may be interrupting (barge-in `confirm`): nothing more is
    /// sent until released; what is queued stays.
    held: bool,
}

impl Turn {
    fn new(generation: Generation) -> Self {
        Self {
            generation,
            speech_end: None,
            started: false,
            audio_done: false,
            finished: false,
            sentence_frames: Vec::new(),
            sent: (0, 0),
            played: (0, 0),
            held: false,
        }
    }

    fn heard(&self) -> Heard {
        let (index, frames) = self.played;
        let total = self
            .sentence_frames
            .get(index as usize)
            .copied()
            .unwrap_or(0);
        if total > 0 && frames >= total {
            Heard {
                sentences: index as usize + 1,
                partial: 0.0,
            }
        } else {
            Heard {
                sentences: index as usize,
                partial: if total == 0 {
                    0.0
                } else {
                    frames as f32 / total as f32
                },
            }
        }
    }
}

pub struct MediaOut;

impl crate::child::CallChild for MediaOut {
    const KIND: ChildKind = ChildKind::MediaOut;
}

pub struct MediaOutState {
    ctx: Arc<CallContext>,
    turn: Turn,
    queue: VecDeque<Queued>,
    marks: VecDeque<PendingMark>,
    next_mark: u32,
    /// When everything sent so far will have finished playing at Twilio.
    play_end: Instant,
    /// The next wake-up and the task that delivers it.
    timer: Option<(Instant, AbortOnDrop)>,
    frames_sent: Counter,
    turn_response: Histogram,
}

impl MediaOutState {
    fn send(&self, msg: Command) -> bool {
        match self.ctx.outbound.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // Hundreds of messages behind while pacing at real time: the
                // socket is not being drained. The supervisor ends the call.
                self.ctx
                    .routes
                    .supervisor
                    .send(SupervisorMsg::OutboundStalled);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Drops everything of the current turn, records what was heard, and
    /// starts an (idle) turn `generation`.
    fn cancel_to(&mut self, generation: Generation, clear: bool) {
        // Audio at Twilio that has not been confirmed played must be cleared,
        // whatever the supervisor knew when it asked.
        let unplayed = self.turn.started && !self.turn.finished;
        if !self.turn.finished {
            self.estimate_played(Instant::now());
            self.ctx
                .history()
                .cut_to_heard(self.turn.generation, self.turn.heard());
        }
        self.queue.clear();
        self.marks.clear();
        self.timer = None;
        if (clear || unplayed) && self.ctx.capabilities.clears_audio {
            self.send(Command::Clear);
            self.ctx.recording.clear();
            self.play_end = Instant::now();
        }
        self.turn = Turn::new(generation);
    }

    fn pump(&mut self, myself: &ActorRef<MediaOutMsg>) {
        let lead_target = if self.turn.held {
            Duration::ZERO
        } else {
            self.ctx.settings.playback_lead()
        };
        let mut now = Instant::now();
        while self.play_end.saturating_duration_since(now) < lead_target {
            // One `media` message per chunk (≤ 100 ms): Twilio takes any
            // length and plays in order, and five times fewer messages is
            // five times less JSON, base64 and syscalls on both ends.
            let Some(front) = self.queue.pop_front() else {
                break;
            };
            let index = front.index;
            let len = front.chunk.len();
            self.ctx.recording.bot(&front.chunk, self.play_end.max(now));
            let frames = len.div_ceil(FRAME_SAMPLES) as u32;
            if !self.send(Command::Audio(front.chunk)) {
                return;
            }
            self.frames_sent.increment(frames as u64);
            if !self.turn.started {
                self.turn.started = true;
                if let Some(speech_end) = self.turn.speech_end {
                    self.turn_response
                        .record(now.saturating_duration_since(speech_end).as_secs_f64());
                }
                self.ctx
                    .routes
                    .supervisor
                    .send(SupervisorMsg::PlaybackStarted {
                        generation: self.turn.generation,
                    });
            }
            self.play_end = self.play_end.max(now) + Duration::from_micros(len as u64 * 125);
            self.turn.sent = if self.turn.sent.0 == index {
                (index, self.turn.sent.1 + frames)
            } else {
                (index, frames)
            };
            self.next_mark += 1;
            let id = Checkpoint {
                turn: self.turn.generation,
                seq: self.next_mark,
            };
            if self.ctx.capabilities.reports_playback && !self.send(Command::Checkpoint(id)) {
                return;
            }
            self.marks.push_back(PendingMark {
                id,
                index,
                frames: self.turn.sent.1,
                plays_at: self.play_end,
            });
            now = Instant::now();
        }
        self.check_finished(now);
        self.schedule(myself, now);
    }

    /// Marks `id` and every checkpoint before it as played.
    fn played(&mut self, id: Checkpoint) {
        while let Some(mark) = self.marks.pop_front() {
            self.turn.played = (mark.index, mark.frames);
            if mark.id == id {
                break;
            }
        }
    }

    /// For a carrier that reports no playback: every checkpoint whose audio
    /// the real-time clock says has played counts as played.
    fn estimate_played(&mut self, now: Instant) {
        if self.ctx.capabilities.reports_playback {
            return;
        }
        while let Some(mark) = self.marks.front() {
            if mark.plays_at > now {
                break;
            }
            self.turn.played = (mark.index, mark.frames);
            self.marks.pop_front();
        }
    }

    fn check_finished(&mut self, now: Instant) {
        self.estimate_played(now);
        if self.turn.finished || !self.turn.audio_done || !self.queue.is_empty() {
            return;
        }
        let lost_marks = !self.marks.is_empty() && now >= self.play_end + MARK_GRACE;
        if lost_marks {
            tracing::warn!(parent: &self.ctx.span, pending = self.marks.len(), "marks not echoed; taking the turn as played");
            self.marks.clear();
        }
        if self.marks.is_empty() {
            self.turn.finished = true;
            self.ctx
                .routes
                .supervisor
                .send(SupervisorMsg::PlaybackFinished {
                    generation: self.turn.generation,
                });
        }
    }

    /// Wakes up when the lead has run down to half the target (so each wakeup
    /// sends several frames), or when lost marks should be given up on. Keeps
    /// one timer, set to the earliest wake-up needed.
    fn schedule(&mut self, myself: &ActorRef<MediaOutMsg>, now: Instant) {
        let half = self.ctx.settings.playback_lead() / 2;
        let at = if !self.queue.is_empty() && !self.turn.held {
            self.play_end
                .checked_sub(half)
                .unwrap_or(now)
                .max(now + Duration::from_millis(5))
        } else if let (false, Some(mark)) =
            (self.ctx.capabilities.reports_playback, self.marks.front())
        {
            // Estimating: wake when the next checkpoint's audio has played.
            mark.plays_at.max(now + Duration::from_millis(5))
        } else if self.turn.audio_done && !self.turn.finished && !self.marks.is_empty() {
            self.play_end + MARK_GRACE
        } else {
            self.timer = None;
            return;
        };
        if self.timer.as_ref().is_some_and(|(t, _)| *t <= at) {
            return;
        }
        let me = myself.clone();
        let task = AbortOnDrop::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = me.send_message(MediaOutMsg::Tick);
        });
        self.timer = Some((at, task));
    }
}

impl Actor for MediaOut {
    type Msg = MediaOutMsg;
    type State = MediaOutState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pipeline = ctx.providers.pipeline.to_string();
        Ok(MediaOutState {
            turn: Turn::new(ctx.generation()),
            ctx,
            queue: VecDeque::new(),
            marks: VecDeque::new(),
            next_mark: 0,
            play_end: Instant::now(),
            timer: None,
            frames_sent: metrics::counter!(m::FRAMES_SENT),
            turn_response: metrics::histogram!(m::TURN_RESPONSE, "provider" => pipeline),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MediaOutMsg::TurnStarted {
                generation,
                speech_end,
            } => {
                if generation > state.turn.generation {
                    state.cancel_to(generation, false);
                }
                if generation == state.turn.generation {
                    state.turn.speech_end = speech_end;
                }
            }
            MediaOutMsg::Audio {
                generation,
                index,
                chunk,
                permit,
            } => {
                if generation < state.turn.generation {
                    return Ok(()); // stale: dropped with its permit
                }
                if generation > state.turn.generation {
                    state.cancel_to(generation, false);
                }
                let i = index as usize;
                if state.turn.sentence_frames.len() <= i {
                    state.turn.sentence_frames.resize(i + 1, 0);
                }
                state.turn.sentence_frames[i] += chunk.len().div_ceil(FRAME_SAMPLES) as u32;
                state.queue.push_back(Queued {
                    index,
                    chunk,
                    _permit: permit,
                });
                state.pump(&myself);
            }
            MediaOutMsg::EndOfTurn { generation } => {
                if generation == state.turn.generation {
                    state.turn.audio_done = true;
                    state.pump(&myself);
                }
            }
            MediaOutMsg::Cancel { generation, clear } => {
                if generation > state.turn.generation {
                    state.cancel_to(generation, clear);
                }
            }
            MediaOutMsg::Played(id) => {
                if id.turn != state.turn.generation {
                    return Ok(()); // echo of a cancelled turn's mark (Twilio returns them on clear)
                }
                state.played(id);
                let now = Instant::now();
                state.check_finished(now);
                state.schedule(&myself, now);
            }
            MediaOutMsg::Hold { generation, held } => {
                if generation == state.turn.generation && state.turn.held != held {
                    state.turn.held = held;
                    state.pump(&myself);
                }
            }
            MediaOutMsg::Tick => {
                state.timer = None;
                state.pump(&myself);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::CallArgs;
    use crate::policy::PolicyFile;
    use crate::protocol::{CallIds, Capabilities};
    use crate::providers::Providers;
    use crate::settings::CallSettings;
    use tokio::sync::mpsc;

    async fn media_out() -> (
        Arc<CallContext>,
        ActorRef<MediaOutMsg>,
        mpsc::Receiver<Command>,
    ) {
        media_out_on(Capabilities::TWILIO).await
    }

    async fn media_out_on(
        capabilities: Capabilities,
    ) -> (
        Arc<CallContext>,
        ActorRef<MediaOutMsg>,
        mpsc::Receiver<Command>,
    ) {
        let (tx, rx) = mpsc::channel(256);
        let policy = Arc::new(PolicyFile::default());
        let ctx = CallContext::new(CallArgs {
            placed: None,
            resumed: Default::default(),
            ids: CallIds {
                carrier: "test",
                call_id: "CA1".into(),
                stream_id: "MZ1".into(),
            },
            capabilities,
            providers: Providers::simulated(&policy),
            policy,
            settings: CallSettings::default(),
            outbound: tx,
            transfer: None,
            fault: None,
            records: Arc::new(crate::records::MemorySink::default()),
            record_base: 0,
            ask_consent: false,
            recordings: None,
            languages: Default::default(),
        });
        let (actor, _) = MediaOut::spawn(None, MediaOut, Arc::clone(&ctx))
            .await
            .unwrap();
        (ctx, actor, rx)
    }

    /// Stands in for the supervisor: forwards what `MediaOut` tells it.
    struct Probe;

    impl Actor for Probe {
        type Msg = SupervisorMsg;
        type State = mpsc::UnboundedSender<SupervisorMsg>;
        type Arguments = mpsc::UnboundedSender<SupervisorMsg>;

        async fn pre_start(
            &self,
            _: ActorRef<SupervisorMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<SupervisorMsg>,
            msg: SupervisorMsg,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let _ = tx.send(msg);
            Ok(())
        }
    }

    async fn probe(ctx: &CallContext) -> mpsc::UnboundedReceiver<SupervisorMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Probe::spawn(None, Probe, tx).await.unwrap();
        ctx.routes.supervisor.set(actor);
        rx
    }

    const NO_PLAYBACK_REPORTS: Capabilities = Capabilities {
        reports_playback: false,
        clears_audio: false,
        ..Capabilities::TWILIO
    };

    #[tokio::test(start_paused = true)]
    async fn without_playback_reports_no_checkpoint_is_sent_and_the_clock_says_when_a_turn_has_played()
     {
        let (ctx, actor, mut rx) = media_out_on(NO_PLAYBACK_REPORTS).await;
        let mut sup = probe(&ctx).await;
        let start = Instant::now();
        actor
            .send_message(MediaOutMsg::TurnStarted {
                generation: 1,
                speech_end: None,
            })
            .unwrap();
        for _ in 0..5 {
            actor.send_message(audio(&ctx, 1).await).unwrap(); // 500 ms
        }
        actor
            .send_message(MediaOutMsg::EndOfTurn { generation: 1 })
            .unwrap();
        let finished = loop {
            match tokio::time::timeout(Duration::from_secs(30), sup.recv()).await {
                Ok(Some(SupervisorMsg::PlaybackFinished { generation: 1 })) => {
                    break Instant::now();
                }
                Ok(Some(_)) => {}
                other => panic!("no PlaybackFinished: {other:?}"),
            }
        };
        let took = finished - start;
        // Finished when its 500 ms had played, not at the lost-marks grace.
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(500) + MARK_GRACE,
            "{took:?}"
        );
        let sent = drain(&mut rx, 50).await;
        assert_eq!(
            sent.iter()
                .filter(|c| matches!(c, Command::Audio(_)))
                .count(),
            5
        );
        assert!(
            !sent
                .iter()
                .any(|c| matches!(c, Command::Checkpoint(_) | Command::Clear)),
            "{sent:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_playback_reports_a_cancel_cuts_the_history_at_what_the_clock_says_was_heard() {
        let (ctx, actor, mut rx) = media_out_on(NO_PLAYBACK_REPORTS).await;
        let _sup = probe(&ctx).await;
        ctx.history().push_bot_sentence(1, "one");
        ctx.history().push_bot_sentence(1, "two");
        actor
            .send_message(MediaOutMsg::TurnStarted {
                generation: 1,
                speech_end: None,
            })
            .unwrap();
        // Sentence 0: 200 ms; sentence 1: 800 ms.
        for index in [0u32, 0, 1, 1, 1, 1, 1, 1, 1, 1] {
            let MediaOutMsg::Audio {
                generation,
                chunk,
                permit,
                ..
            } = audio(&ctx, 1).await
            else {
                unreachable!()
            };
            actor
                .send_message(MediaOutMsg::Audio {
                    generation,
                    index,
                    chunk,
                    permit,
                })
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
        actor
            .send_message(MediaOutMsg::Cancel {
                generation: 2,
                clear: true,
            })
            .unwrap();
        let _ = drain(&mut rx, 50).await;
        let history = ctx.history();
        let turn = history.turns().last().unwrap();
        // The first sentence was heard; the second was cut partway.
        assert_eq!(turn.sentences.first().map(String::as_str), Some("one"));
        assert!(turn.interrupted, "{turn:?}");
    }

    async fn audio(ctx: &CallContext, generation: Generation) -> MediaOutMsg {
        let permit = Arc::clone(&ctx.audio_budget)
            .acquire_many_owned(5)
            .await
            .unwrap();
        MediaOutMsg::Audio {
            generation,
            index: 0,
            chunk: Bytes::from(vec![0x55u8; 800]),
            permit,
        }
    }

    /// Everything queued for the socket within `ms`.
    async fn drain(rx: &mut mpsc::Receiver<Command>, ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(ms), rx.recv()).await {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn cancel_clears_sent_audio_and_no_older_media_follows_the_clear() {
        let (ctx, actor, mut rx) = media_out().await;
        actor
            .send_message(MediaOutMsg::TurnStarted {
                generation: 1,
                speech_end: None,
            })
            .unwrap();
        for _ in 0..4 {
            actor.send_message(audio(&ctx, 1).await).unwrap();
        }
        assert!(matches!(rx.recv().await, Some(Command::Audio(_))));
        // The supervisor had not yet heard that playback started: clear=false.
        actor
            .send_message(MediaOutMsg::Cancel {
                generation: 2,
                clear: false,
            })
            .unwrap();
        // Audio of the cancelled turn still in flight from Tts.
        actor.send_message(audio(&ctx, 1).await).unwrap();
        let out = drain(&mut rx, 200).await;
        let clear = out
            .iter()
            .position(|m| *m == Command::Clear)
            .expect("clear sent");
        assert!(
            !out[clear..].iter().any(|m| matches!(m, Command::Audio(_))),
            "media after clear: {out:?}"
        );
        // All permits of dropped audio came back.
        assert_eq!(
            ctx.audio_budget.available_permits(),
            CallSettings::default().queued_audio_frames()
        );
    }

    #[tokio::test]
    async fn audio_is_paced_ahead_of_playback_with_a_mark_per_chunk() {
        let (ctx, actor, mut rx) = media_out().await;
        actor
            .send_message(MediaOutMsg::TurnStarted {
                generation: 1,
                speech_end: None,
            })
            .unwrap();
        for _ in 0..10 {
            actor.send_message(audio(&ctx, 1).await).unwrap(); // 1 s of audio
        }
        let early = drain(&mut rx, 50).await;
        let media = early
            .iter()
            .filter(|m| matches!(m, Command::Audio(_)))
            .count();
        // 300 ms lead: three 100 ms chunks (plus the one crossing it), not the whole second.
        assert!((3..=4).contains(&media), "{media} chunks sent at once");
        let marks = early
            .iter()
            .filter(|m| matches!(m, Command::Checkpoint(_)))
            .count();
        assert_eq!(marks, media, "one mark per chunk");
    }

    #[test]
    fn heard_counts_whole_and_partial_sentences() {
        let mut t = Turn::new(1);
        t.sentence_frames = vec![10, 20];
        t.played = (0, 10);
        assert_eq!(
            t.heard(),
            Heard {
                sentences: 1,
                partial: 0.0
            }
        );
        t.played = (1, 5);
        assert_eq!(
            t.heard(),
            Heard {
                sentences: 1,
                partial: 0.25
            }
        );
    }
}
