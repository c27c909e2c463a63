//! `MediaIn`: the carrier's events → 20 ms PCM16 frames for `Vad` and
//! μ-law frames for `Stt`; counts sequence gaps; forwards DTMF to the
//! supervisor and playback reports to `MediaOut`.
//!
//! Every event in takes a slot of a bounded backlog first — audio, DTMF and
//! playback reports each from their own — so a peer that floods the
//! socket can fill neither mailbox: past the bound, new events are dropped
//! and counted.

use std::sync::Arc;

use bytes::Bytes;
use metrics::Counter;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::context::CallContext;
use crate::metrics as m;
use crate::protocol::STT_BATCH_FRAMES;
use crate::protocol::{
    Checkpoint, ChildKind, EndReason, InboundAudio, MediaInMsg, MediaOutMsg, SttMsg, SupervisorMsg,
    VadMsg,
};
use crate::ulaw::{self, FRAME_SAMPLES};
use hark_carrier::port::Event;

/// Hands one event from the carrier's stream to the call: the one door
/// into the call core for every carrier. Returns false when it was not
/// taken: audio dropped because `MediaIn` is behind (counted here), or
/// DTMF or a playback report over its backlog (the adapter counts
/// it as a flood). `Stop` ends the call silently.
pub fn deliver(ctx: &CallContext, event: Event<'_>) -> bool {
    match event {
        Event::Audio { seq, payload } => deliver_media(ctx, seq, payload),
        Event::Dtmf { seq, digit } => deliver_dtmf(ctx, seq, digit),
        Event::Played { seq, checkpoint } => deliver_played(ctx, seq, checkpoint),
        Event::Stop => ctx.routes.supervisor.send(SupervisorMsg::Hangup {
            reason: EndReason::Stop,
        }),
    }
}

/// Hands one inbound `media` payload to the call. Returns false (and counts
/// it) when `MediaIn` is too far behind and the frame was dropped.
pub fn deliver_media(ctx: &CallContext, seq: u64, audio: &[u8]) -> bool {
    let Some(slot) = ctx.backlogs.media_in.try_slot() else {
        metrics::counter!(m::FRAMES_DROPPED, "stage" => "media_in").increment(1);
        return false;
    };
    ctx.routes.media_in.send(MediaInMsg::Media {
        seq,
        audio: InboundAudio::from_slice(audio),
        received: Instant::now(),
        slot,
    })
}

/// Hands a DTMF digit to the call; false (counted by the caller) when the
/// DTMF backlog is full.
pub fn deliver_dtmf(ctx: &CallContext, seq: u64, digit: char) -> bool {
    let Some(slot) = ctx.backlogs.dtmf.try_slot() else {
        return false;
    };
    ctx.routes
        .media_in
        .send(MediaInMsg::Dtmf { seq, digit, slot })
}

/// Hands a playback report to the call; false when its backlog is full.
pub fn deliver_played(ctx: &CallContext, seq: u64, checkpoint: Checkpoint) -> bool {
    let Some(slot) = ctx.backlogs.played.try_slot() else {
        return false;
    };
    ctx.routes.media_in.send(MediaInMsg::Played {
        seq,
        checkpoint,
        slot,
    })
}

/// Whether `seq` does not follow `last`. Sequence numbers come from the
/// peer, so `last` may be `u64::MAX`: no arithmetic may overflow.
fn is_gap(last: Option<u64>, seq: u64) -> bool {
    last.is_some_and(|last| last.checked_add(1) != Some(seq))
}

pub struct MediaIn;

impl crate::child::CallChild for MediaIn {
    const KIND: ChildKind = ChildKind::MediaIn;
}

pub struct MediaInState {
    ctx: Arc<CallContext>,
    last_seq: Option<u64>,
    /// Bytes of an incomplete 20 ms frame carried to the next payload.
    partial: [u8; FRAME_SAMPLES],
    partial_len: usize,
    /// Audio collected for the next `Stt` message.
    stt_batch: Vec<u8>,
    gaps: Counter,
    vad_drops: Counter,
    stt_drops: Counter,
}

impl MediaInState {
    fn check_sequence(&mut self, seq: u64) {
        if is_gap(self.last_seq, seq) {
            self.gaps.increment(1);
            tracing::debug!(parent: &self.ctx.span, last = self.last_seq, seq, "sequence gap");
        }
        self.last_seq = Some(seq);
    }

    fn frame(&mut self, ulaw_frame: &[u8; FRAME_SAMPLES], received: Instant) {
        let ctx = &self.ctx;
        match ctx.backlogs.vad.try_slot() {
            Some(slot) => {
                let mut pcm = [0i16; FRAME_SAMPLES];
                ulaw::decode_into(ulaw_frame, &mut pcm);
                ctx.routes.vad.send(VadMsg::Frame {
                    pcm,
                    received,
                    slot,
                });
            }
            None => self.vad_drops.increment(1),
        }
        self.stt_batch.extend_from_slice(ulaw_frame);
        if self.stt_batch.len() >= STT_BATCH_FRAMES * FRAME_SAMPLES {
            let batch = std::mem::replace(
                &mut self.stt_batch,
                Vec::with_capacity(STT_BATCH_FRAMES * FRAME_SAMPLES),
            );
            match ctx.backlogs.stt.try_slot() {
                Some(slot) => {
                    ctx.routes.stt.send(SttMsg::Audio {
                        ulaw: Bytes::from(batch),
                        slot,
                    });
                }
                None => self.stt_drops.increment(STT_BATCH_FRAMES as u64),
            }
        }
    }

    /// Re-frames an arbitrary-length payload into exact 20 ms frames.
    fn audio(&mut self, mut bytes: &[u8], received: Instant) {
        if self.partial_len > 0 {
            let take = (FRAME_SAMPLES - self.partial_len).min(bytes.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&bytes[..take]);
            self.partial_len += take;
            bytes = &bytes[take..];
            if self.partial_len < FRAME_SAMPLES {
                return;
            }
            let frame = self.partial;
            self.partial_len = 0;
            self.frame(&frame, received);
        }
        let mut chunks = bytes.chunks_exact(FRAME_SAMPLES);
        for chunk in &mut chunks {
            if let Ok(frame) = <&[u8; FRAME_SAMPLES]>::try_from(chunk) {
                self.frame(frame, received);
            }
        }
        let rest = chunks.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
    }
}

impl Actor for MediaIn {
    type Msg = MediaInMsg;
    type State = MediaInState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(MediaInState {
            ctx,
            last_seq: None,
            partial: [ulaw::SILENCE; FRAME_SAMPLES],
            partial_len: 0,
            stt_batch: Vec::with_capacity(STT_BATCH_FRAMES * FRAME_SAMPLES),
            gaps: metrics::counter!(m::SEQUENCE_GAPS),
            vad_drops: metrics::counter!(m::FRAMES_DROPPED, "stage" => "vad"),
            stt_drops: metrics::counter!(m::FRAMES_DROPPED, "stage" => "stt"),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MediaInMsg::Media {
                seq,
                audio,
                received,
                slot,
            } => {
                state.check_sequence(seq);
                state.ctx.recording.caller(audio.as_slice());
                state.audio(audio.as_slice(), received);
                drop(slot);
            }
            MediaInMsg::Dtmf { seq, digit, slot } => {
                state.check_sequence(seq);
                state
                    .ctx
                    .routes
                    .supervisor
                    .send(SupervisorMsg::Dtmf { digit });
                drop(slot);
            }
            MediaInMsg::Played {
                seq,
                checkpoint,
                slot,
            } => {
                state.check_sequence(seq);
                state
                    .ctx
                    .routes
                    .media_out
                    .send(MediaOutMsg::Played(checkpoint));
                drop(slot);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_never_overflow_on_hostile_numbers() {
        assert!(!is_gap(None, u64::MAX));
        assert!(!is_gap(Some(4), 5));
        assert!(is_gap(Some(4), 7));
        // `last + 1` would overflow here (a panic in debug builds).
        assert!(is_gap(Some(u64::MAX), 0));
        assert!(is_gap(Some(u64::MAX), u64::MAX));
    }

    #[test]
    fn inline_and_heap_payloads() {
        let small = InboundAudio::from_slice(&[1, 2, 3]);
        assert!(matches!(small, InboundAudio::Inline { len: 3, .. }));
        assert_eq!(small.as_slice(), &[1, 2, 3]);
        let big = InboundAudio::from_slice(&[7; 400]);
        assert!(matches!(big, InboundAudio::Heap(_)));
        assert_eq!(big.as_slice().len(), 400);
    }
}
