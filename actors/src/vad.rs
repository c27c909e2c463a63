//! `Vad`: webrtc-vad over 20 ms frames at 8 kHz, turned into turn-taking
//! events by an endpointer: speech starts after the policy's onset, may
//! interrupt the bot after its barge-in minimum, and ends after its
//! endpointing silence.
//!
//! Timing is counted in frames of audio, not wall-clock time, so it is exact
//! and deterministic; events carry the arrival time of the frames that caused
//! them so latency can be measured from real speech boundaries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::beep::BeepDetector;
use crate::context::CallContext;
use crate::policy::{FRAME_MS, PolicyFile, VadMode};
use crate::protocol::{ChildKind, SttMsg, SupervisorMsg, VadMsg};
use crate::providers::SpeechInfo;
use crate::ulaw::FRAME_SAMPLES;

/// Turn-taking events, in the order they happen for one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech lasted the onset; `at` is when its first voiced frame arrived.
    SpeechStarted { at: Instant },
    /// Speech lasted the barge-in minimum.
    BargeIn { at: Instant },
    /// Silence lasted the endpointing time; `last_voice` is when the last voiced frame arrived.
    SpeechEnded { last_voice: Instant, speech_ms: u32 },
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Silent {
        voiced_run: u32,
        run_start: Instant,
    },
    Speaking {
        started: Instant,
        voiced: u32,
        silent_run: u32,
        last_voice: Instant,
        barge_sent: bool,
    },
}

/// The pure state machine behind `Vad`, testable without audio.
#[derive(Debug, Clone)]
pub struct Endpointer {
    onset: u32,
    barge_in: u32,
    endpoint: u32,
    phase: Phase,
}

impl Endpointer {
    pub fn new(
        onset_frames: u32,
        barge_in_frames: u32,
        endpoint_frames: u32,
        now: Instant,
    ) -> Self {
        Self {
            onset: onset_frames.max(1),
            barge_in: barge_in_frames.max(onset_frames).max(1),
            endpoint: endpoint_frames.max(1),
            phase: Phase::Silent {
                voiced_run: 0,
                run_start: now,
            },
        }
    }

    pub fn for_policy(policy: &PolicyFile, now: Instant) -> Self {
        Self::new(
            policy.onset_frames(),
            policy.barge_in_frames(),
            policy.endpoint_frames(),
            now,
        )
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.phase, Phase::Speaking { .. })
    }

    /// Feeds one frame's decision; `emit` gets zero, one or two events.
    pub fn push(&mut self, voiced: bool, at: Instant, mut emit: impl FnMut(VadEvent)) {
        match &mut self.phase {
            Phase::Silent {
                voiced_run,
                run_start,
            } => {
                if !voiced {
                    *voiced_run = 0;
                    return;
                }
                if *voiced_run == 0 {
                    *run_start = at;
                }
                *voiced_run += 1;
                if *voiced_run >= self.onset {
                    let started = *run_start;
                    let voiced = *voiced_run;
                    emit(VadEvent::SpeechStarted { at: started });
                    let barge_sent = voiced >= self.barge_in;
                    if barge_sent {
                        emit(VadEvent::BargeIn { at: started });
                    }
                    self.phase = Phase::Speaking {
                        started,
                        voiced,
                        silent_run: 0,
                        last_voice: at,
                        barge_sent,
                    };
                }
            }
            Phase::Speaking {
                started,
                voiced: voiced_frames,
                silent_run,
                last_voice,
                barge_sent,
            } => {
                if voiced {
                    *voiced_frames += 1;
                    *silent_run = 0;
                    *last_voice = at;
                    if !*barge_sent && *voiced_frames >= self.barge_in {
                        *barge_sent = true;
                        emit(VadEvent::BargeIn { at: *started });
                    }
                    return;
                }
                *silent_run += 1;
                if *silent_run >= self.endpoint {
                    let speech_ms = (last_voice.duration_since(*started).as_millis() as u32)
                        .saturating_add(FRAME_MS);
                    emit(VadEvent::SpeechEnded {
                        last_voice: *last_voice,
                        speech_ms,
                    });
                    self.phase = Phase::Silent {
                        voiced_run: 0,
                        run_start: at,
                    };
                }
            }
        }
    }
}

/// Sum of squares of a frame below which it is silence: RMS at `dbfs`.
pub fn silence_floor(dbfs: f64) -> u64 {
    let rms = 32768.0 * 10f64.powf(dbfs / 20.0);
    (rms * rms * FRAME_SAMPLES as f64) as u64
}

/// Whether a frame carries more energy than `floor` (see [`silence_floor`]).
pub fn is_loud(pcm: &[i16; FRAME_SAMPLES], floor: u64) -> bool {
    let energy: u64 = pcm.iter().map(|&s| (s as i64 * s as i64) as u64).sum();
    energy >= floor
}

/// webrtc-vad's handle, made movable between threads.
struct SendVad(webrtc_vad::Vad);

// SAFETY: `webrtc_vad::Vad` owns a heap-allocated libfvad instance through a
// raw pointer, which is why it is not `Send`. libfvad keeps all of its state in
// that instance (no thread-locals, no globals besides constant tables), so
// moving the owner to another thread is sound. It is still not `Sync`: the
// actor is the only owner and uses it from one handler at a time.
#[allow(unsafe_code)]
unsafe impl Send for SendVad {}

impl SendVad {
    fn new(mode: VadMode) -> Self {
        let mode = match mode {
            VadMode::Quality => webrtc_vad::VadMode::Quality,
            VadMode::LowBitrate => webrtc_vad::VadMode::LowBitrate,
            VadMode::Aggressive => webrtc_vad::VadMode::Aggressive,
            VadMode::VeryAggressive => webrtc_vad::VadMode::VeryAggressive,
        };
        Self(webrtc_vad::Vad::new_with_rate_and_mode(
            webrtc_vad::SampleRate::Rate8kHz,
            mode,
        ))
    }

    fn is_voice(&mut self, pcm: &[i16; FRAME_SAMPLES]) -> bool {
        // Cannot fail: the frame is exactly 20 ms at 8 kHz.
        self.0.is_voice_segment(pcm).unwrap_or(false)
    }
}

/// The per-frame speech decision: webrtc-vad, gated by the silence floor.
pub struct FrameClassifier {
    vad: SendVad,
    floor: u64,
}

impl FrameClassifier {
    pub fn new(mode: VadMode, silence_floor_dbfs: f64) -> Self {
        Self {
            vad: SendVad::new(mode),
            floor: silence_floor(silence_floor_dbfs),
        }
    }

    /// Whether the frame is speech. The VAD sees every frame (it tracks the
    /// noise level), but a frame below the floor is silence even during the
    /// VAD's hangover.
    pub fn is_speech(&mut self, pcm: &[i16; FRAME_SAMPLES]) -> bool {
        self.vad.is_voice(pcm) && is_loud(pcm, self.floor)
    }
}

pub struct Vad;

impl crate::child::CallChild for Vad {
    const KIND: ChildKind = ChildKind::Vad;
}

pub struct VadState {
    ctx: Arc<CallContext>,
    classifier: FrameClassifier,
    endpointer: Endpointer,
    /// While an outbound call's callee is unknown: listening for a beep.
    beep: Option<BeepDetector>,
}

impl Actor for Vad {
    type Msg = VadMsg;
    type State = VadState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(VadState {
            classifier: FrameClassifier::new(
                ctx.policy.vad.mode,
                ctx.policy.vad.silence_floor_dbfs,
            ),
            endpointer: Endpointer::for_policy(&ctx.policy, Instant::now()),
            beep: None,
            ctx,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let VadMsg::Frame {
            pcm,
            received,
            slot,
        } = msg;
        drop(slot);
        let VadState {
            ctx,
            classifier,
            endpointer,
            beep,
        } = state;
        if ctx.listen_for_beep.load(Ordering::Relaxed) {
            if let Some(b) = beep.get_or_insert_with(BeepDetector::new).push(&pcm) {
                ctx.routes
                    .supervisor
                    .send(SupervisorMsg::Beep { hz: b.hz, ms: b.ms });
            }
        } else if beep.is_some() {
            *beep = None;
        }
        let voiced = classifier.is_speech(&pcm);
        let routes = &ctx.routes;
        endpointer.push(voiced, received, |event| {
            tracing::debug!(parent: &ctx.span, ?event, "vad");
            match event {
                VadEvent::SpeechStarted { at } => {
                    routes.stt.send(SttMsg::SpeechStarted);
                    routes.supervisor.send(SupervisorMsg::SpeechStarted { at });
                }
                VadEvent::BargeIn { at } => {
                    routes.supervisor.send(SupervisorMsg::BargeIn { at });
                }
                VadEvent::SpeechEnded {
                    last_voice,
                    speech_ms,
                } => {
                    routes.stt.send(SttMsg::EndOfSpeech {
                        info: SpeechInfo { speech_ms },
                        last_voice,
                    });
                    routes.supervisor.send(SupervisorMsg::SpeechEnded {
                        last_voice,
                        speech_ms,
                    });
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(ep: &mut Endpointer, pattern: &[(bool, usize)], t0: Instant) -> Vec<(usize, VadEvent)> {
        let mut out = Vec::new();
        let mut i = 0;
        for &(voiced, n) in pattern {
            for _ in 0..n {
                let at = t0 + Duration::from_millis(20 * i as u64);
                ep.push(voiced, at, |e| out.push((i, e)));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn onset_barge_in_and_endpoint_fire_at_the_right_frames() {
        let t0 = Instant::now();
        let mut ep = Endpointer::new(3, 5, 10, t0);
        let ev = run(&mut ep, &[(false, 4), (true, 20), (false, 12)], t0);
        let at = |i: u64| t0 + Duration::from_millis(20 * i);
        assert_eq!(
            ev,
            vec![
                (6, VadEvent::SpeechStarted { at: at(4) }),
                (8, VadEvent::BargeIn { at: at(4) }),
                (
                    33,
                    VadEvent::SpeechEnded {
                        last_voice: at(23),
                        speech_ms: 400
                    }
                ),
            ]
        );
        assert!(!ep.is_speaking());
    }

    #[test]
    fn short_blips_are_not_speech() {
        let t0 = Instant::now();
        let mut ep = Endpointer::new(3, 3, 10, t0);
        let ev = run(
            &mut ep,
            &[(true, 2), (false, 1), (true, 2), (false, 30)],
            t0,
        );
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn pauses_shorter_than_endpointing_keep_the_turn() {
        let t0 = Instant::now();
        let mut ep = Endpointer::new(2, 2, 10, t0);
        let ev = run(
            &mut ep,
            &[(true, 5), (false, 9), (true, 5), (false, 10)],
            t0,
        );
        let ends = ev
            .iter()
            .filter(|(_, e)| matches!(e, VadEvent::SpeechEnded { .. }))
            .count();
        assert_eq!(ends, 1);
        assert_eq!(ev.len(), 3);
    }

    #[test]
    fn barge_in_equal_to_onset_fires_together() {
        let t0 = Instant::now();
        let mut ep = Endpointer::new(3, 3, 10, t0);
        let ev = run(&mut ep, &[(true, 3)], t0);
        assert_eq!(ev.len(), 2);
        assert!(matches!(ev[1].1, VadEvent::BargeIn { .. }));
    }

    fn voice_frame(f: usize) -> [i16; FRAME_SAMPLES] {
        let mut pcm = [0i16; FRAME_SAMPLES];
        for (n, s) in pcm.iter_mut().enumerate() {
            let t = (f * FRAME_SAMPLES + n) as f32 / 8000.0;
            let v: f32 = (1..20)
                .map(|h| (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin() / h as f32)
                .sum();
            *s = (v * 6000.0) as i16;
        }
        pcm
    }

    #[test]
    fn the_silence_floor_cuts_the_vad_hangover() {
        let floor = silence_floor(-55.0);
        let mut vad = SendVad::new(VadMode::Aggressive);
        for f in 0..50 {
            vad.is_voice(&voice_frame(f));
        }
        let silence = [0i16; FRAME_SAMPLES];
        let hangover = (0..20).take_while(|_| vad.is_voice(&silence)).count();
        assert!(hangover >= 2, "webrtc-vad hangover is {hangover} frames");
        assert!(!is_loud(&silence, floor));
        assert!(is_loud(&voice_frame(0), floor));
        // -60 dBFS noise is below a -55 dBFS floor; -50 dBFS is above it.
        let tone = |dbfs: f64| {
            let amp = 32768.0 * 10f64.powf(dbfs / 20.0) * std::f64::consts::SQRT_2;
            std::array::from_fn::<i16, FRAME_SAMPLES, _>(|n| (amp * (n as f64 * 0.7).sin()) as i16)
        };
        assert!(!is_loud(&tone(-60.0), floor));
        assert!(is_loud(&tone(-50.0), floor));
    }

    #[test]
    fn webrtc_vad_hears_synthetic_voice_and_not_silence() {
        let mut vad = SendVad::new(VadMode::Aggressive);
        let silence = [0i16; FRAME_SAMPLES];
        assert!(!vad.is_voice(&silence));
        let mut voiced_frames = 0;
        for f in 0..25 {
            let mut pcm = [0i16; FRAME_SAMPLES];
            for (n, s) in pcm.iter_mut().enumerate() {
                let t = (f * FRAME_SAMPLES + n) as f32 / 8000.0;
                let v: f32 = (1..20)
                    .map(|h| {
                        let fr = 140.0 * h as f32;
                        (2.0 * std::f32::consts::PI * fr * t).sin() / h as f32
                    })
                    .sum();
                *s = (v * 6000.0) as i16;
            }
            voiced_frames += vad.is_voice(&pcm) as usize;
        }
        assert!(voiced_frames > 15, "{voiced_frames}");
    }
}
