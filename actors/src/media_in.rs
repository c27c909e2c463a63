//! `MediaIn`: Twilio's inbound messages → 20 ms PCM16 frames for `Vad` and
//! μ-law frames for `Stt`; counts sequence gaps; forwards `dtmf` to the
//! supervisor and echoed marks to `MediaOut`.
//!
//! Every message in takes a [`Slot`] of a bounded backlog first — audio
//! from one, DTMF and marks from another — so a peer that floods the socket
//! can fill neither mailbox: past the bound, new messages are dropped and
//! counted.

use std::sync::Arc;

use bytes::Bytes;
use metrics::Counter;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::backlog::Slot;
use crate::call::{CallContext, ChildKind, MarkId};
use crate::call_supervisor::SupervisorMsg;
use crate::media_out::MediaOutMsg;
use crate::metrics as m;
use crate::stt::SttMsg;
use crate::ulaw::{self, FRAME_SAMPLES};
use crate::vad::VadMsg;

/// Largest payload carried inline (no heap) in a message: one Twilio frame.
const INLINE: usize = FRAME_SAMPLES;

/// Caller audio goes to `Stt` in 100 ms batches: streaming STT takes 20–250 ms
/// chunks, and five times fewer messages. `Vad` still gets every 20 ms frame,
/// so turn-taking timing does not change.
pub const STT_BATCH_FRAMES: usize = 5;

/// One inbound `media` payload, already base64-decoded.
#[derive(Debug)]
pub enum InboundAudio {
    /// The usual 20 ms frame (or less), stored inline.
    Inline { len: u8, data: [u8; INLINE] },
    /// A larger payload (Twilio does not promise 160 bytes).
    Heap(Vec<u8>),
}

impl InboundAudio {
    pub fn from_slice(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..bytes.len()].copy_from_slice(bytes);
            Self::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            Self::Heap(bytes.to_vec())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, data } => &data[..*len as usize],
            Self::Heap(v) => v,
        }
    }
}

#[derive(Debug)]
pub enum MediaInMsg {
    Media {
        seq: u64,
        audio: InboundAudio,
        received: Instant,
        slot: Slot,
    },
    Dtmf {
        seq: u64,
        digit: char,
        slot: Slot,
    },
    Mark {
        seq: u64,
        id: MarkId,
        slot: Slot,
    },
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
/// control backlog is full.
pub fn deliver_dtmf(ctx: &CallContext, seq: u64, digit: char) -> bool {
    let Some(slot) = ctx.backlogs.control.try_slot() else {
        return false;
    };
    ctx.routes
        .media_in
        .send(MediaInMsg::Dtmf { seq, digit, slot })
}

/// Hands an echoed mark to the call; false when the control backlog is full.
pub fn deliver_mark(ctx: &CallContext, seq: u64, id: MarkId) -> bool {
    let Some(slot) = ctx.backlogs.control.try_slot() else {
        return false;
    };
    ctx.routes.media_in.send(MediaInMsg::Mark { seq, id, slot })
}

/// Whether `seq` does not follow `last`. Sequence numbers come from the
/// peer, so `last` may be `u64::MAX`: no arithmetic may overflow.
fn is_gap(last: Option<u64>, seq: u64) -> bool {
    last.is_some_and(|last| last.checked_add(1) != Some(seq))
}

pub struct MediaIn;

impl crate::fault::CallChild for MediaIn {
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
            MediaInMsg::Mark { seq, id, slot } => {
                state.check_sequence(seq);
                state.ctx.routes.media_out.send(MediaOutMsg::MarkEchoed(id));
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
