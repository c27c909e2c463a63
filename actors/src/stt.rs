//! `Stt`: the call's streaming transcription. The caller's words reach the
//! supervisor as one `Utterance` per turn, whatever the provider does.
//!
//! - **Only speech is streamed.** Audio flows to the provider from half a
//!   second before Hark's VAD hears speech (the pre-roll) until it ends, then
//!   the utterance is finalized; in silence the session idles (the provider
//!   keeps it alive). Streaming STT is billed by audio length, and on a phone
//!   call the caller is mostly listening.
//! - **No word is lost to a dropped socket.** The current utterance's audio is
//!   kept until its final transcript arrives. When the session fails it is
//!   reopened with backoff (100 ms doubling up to the policy's maximum) and
//!   the utterance is replayed into the new one.
//! - **A stalled or down stream does not stall the turn.** If no final
//!   arrives within the policy's `stt_final_ms` after the caller stops, or the
//!   stream is down when they stop, the utterance goes to the fallback
//!   transcriber (OpenAI) as a whole, which has `stt_fallback_ms` to answer.
//! - **A lost utterance is said to be lost.** When nothing could transcribe
//!   it (the fallback failed or timed out), the supervisor hears `Unheard`
//!   and the caller is asked to say it again, rather than left waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::context::CallContext;
use crate::metrics as m;
use crate::policy::BargeInMode;
use crate::protocol::{ChildKind, SttMsg, SupervisorMsg};
use crate::providers::{ProviderError, SpeechInfo, SttEvent, SttInput, SttSession};
use crate::util::AbortOnDrop;

/// Audio kept from before speech is detected: 0.5 s of μ-law.
const PRE_ROLL_BYTES: usize = 4000;
/// Longest utterance kept for replay and fallback: 60 s.
const MAX_UTTERANCE_BYTES: usize = 60 * 8000;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

impl std::fmt::Debug for SttSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SttSession")
    }
}

/// A live provider session.
struct Live {
    id: u64,
    input: Box<dyn SttInput>,
    _pump: AbortOnDrop,
}

/// An utterance the caller finished, waiting for its transcript.
struct Pending {
    id: u64,
    info: SpeechInfo,
    last_voice: Instant,
    /// Its words went to the fallback transcriber.
    fallback: bool,
    _timer: AbortOnDrop,
}

/// A final transcript without words after this much speech is a turn the
/// caller was not understood in (shorter: a cough, a click).
const WORDLESS_SPEECH_MS: u32 = 700;

pub struct Stt;

impl crate::child::CallChild for Stt {
    const KIND: ChildKind = ChildKind::Stt;
}

pub struct SttState {
    ctx: Arc<CallContext>,
    live: Option<Live>,
    sessions: u64,
    connecting: Option<AbortOnDrop>,
    /// Ever connected: later connections count as reconnects.
    connected_once: bool,
    backoff: Duration,
    speaking: bool,
    /// The last `PRE_ROLL_BYTES` of audio, as the batches `MediaIn` sent.
    pre_roll: VecDeque<Bytes>,
    pre_roll_bytes: usize,
    /// Audio of the current (or pending) utterance, as sent (shared, not
    /// copied), kept for a replay or the fallback and released once its
    /// transcript is in: between utterances a call holds no audio.
    utterance: Vec<Bytes>,
    /// Whether anything could need the utterance again: a session that can
    /// drop (replay) or a fallback transcriber.
    keep_audio: bool,
    utterance_bytes: usize,
    pending: Option<Pending>,
    utterances: u64,
    finals: Vec<String>,
    /// The words' languages of the utterance's finals, when reported.
    languages: Vec<String>,
    /// The call changed language: a new session once this utterance is done.
    renew: bool,
    fallback_task: Option<AbortOnDrop>,
}

impl SttState {
    fn provider(&self) -> &'static str {
        self.ctx.spoken().providers.stt.name()
    }

    /// Starts a connection attempt in the background (audio keeps flowing in
    /// meanwhile), with the STT of the language the call is in.
    fn connect(&mut self, myself: &ActorRef<SttMsg>) {
        let stt = Arc::clone(&self.ctx.spoken().providers.stt);
        let me = myself.clone();
        self.connecting = Some(AbortOnDrop::spawn(async move {
            let result = stt.connect().await;
            let _ = me.send_message(SttMsg::Connected(result));
        }));
    }

    /// A session in the call's new language, unless the caller is mid-
    /// utterance (then after it: its words belong to the old session).
    fn renew_if_idle(&mut self, myself: &ActorRef<SttMsg>) {
        if !self.renew || self.speaking || self.pending.is_some() {
            return;
        }
        self.renew = false;
        if let Some(mut live) = self.live.take() {
            live.input.close();
        }
        self.finals.clear();
        self.languages.clear();
        self.connect(myself);
    }

    fn lost(&mut self, myself: &ActorRef<SttMsg>, error: ProviderError) {
        let provider = self.provider();
        tracing::warn!(parent: &self.ctx.span, provider, %error, "stt session lost; reconnecting");
        self.ctx.provider_fault(provider, &error);
        self.live = None;
        // The replay (or the fallback) transcribes the whole utterance again.
        self.finals.clear();
        self.schedule_reconnect(myself);
        // The caller may have finished while the stream was down.
        if self.pending.as_ref().is_some_and(|p| !p.fallback) {
            self.transcribe_with_fallback(myself);
        }
    }

    fn schedule_reconnect(&mut self, myself: &ActorRef<SttMsg>) {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.ctx.policy.timeouts.stt_reconnect_max());
        let me = myself.clone();
        self.connecting = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = me.send_message(SttMsg::Reconnect);
        }));
    }

    fn install(&mut self, myself: &ActorRef<SttMsg>, session: SttSession) {
        self.sessions += 1;
        let id = self.sessions;
        let mut events = session.events;
        let me = myself.clone();
        let pump = AbortOnDrop::spawn(async move {
            while let Some(event) = events.next().await {
                if me
                    .send_message(SttMsg::Provider {
                        session: id,
                        event: Some(event),
                    })
                    .is_err()
                {
                    return;
                }
            }
            let _ = me.send_message(SttMsg::Provider {
                session: id,
                event: None,
            });
        });
        let mut live = Live {
            id,
            input: session.input,
            _pump: pump,
        };
        if self.connected_once {
            metrics::counter!(m::PROVIDER_RECONNECTS, "provider" => self.provider()).increment(1);
            tracing::info!(parent: &self.ctx.span, provider = self.provider(), "stt session reopened");
        }
        self.connected_once = true;
        self.backoff = FIRST_BACKOFF;
        // Replay what the caller said that has no transcript yet.
        if self.speaking || self.pending.as_ref().is_some_and(|p| !p.fallback) {
            for chunk in &self.utterance {
                live.input.audio(chunk);
            }
        }
        if let Some(p) = self.pending.as_ref().filter(|p| !p.fallback) {
            live.input.end_of_speech(p.info);
        }
        self.live = Some(live);
    }

    fn transcribe_with_fallback(&mut self, myself: &ActorRef<SttMsg>) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let Some(fallback) = self.ctx.providers.stt_fallback.clone() else {
            return;
        };
        pending.fallback = true;
        let utterance = pending.id;
        self.finals.clear();
        let mut audio = Vec::with_capacity(self.utterance_bytes);
        for chunk in self.take_utterance() {
            audio.extend_from_slice(&chunk);
        }
        let me = myself.clone();
        tracing::info!(parent: &self.ctx.span, provider = fallback.name(), "transcribing the utterance with the fallback");
        let limit = self.ctx.policy.timeouts.stt_fallback();
        self.fallback_task = Some(AbortOnDrop::spawn(async move {
            let result = match tokio::time::timeout(limit, fallback.transcribe(&audio)).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Timeout(limit)),
            };
            let _ = me.send_message(SttMsg::Transcribed { utterance, result });
        }));
    }

    /// Tells the supervisor the caller's words of this utterance are lost.
    fn unheard(&self) {
        self.ctx.routes.supervisor.send(SupervisorMsg::Unheard);
    }

    /// The utterance is transcribed: hand the caller's words on. False when
    /// there were none.
    fn complete(&mut self, provider: &'static str, extra: Option<String>) -> bool {
        let Some(pending) = self.pending.take() else {
            return false;
        };
        metrics::histogram!(m::STT_FINAL, "provider" => provider)
            .record(pending.last_voice.elapsed().as_secs_f64());
        self.finals.extend(extra.filter(|t| !t.trim().is_empty()));
        let text = std::mem::take(&mut self.finals).join(" ");
        let languages = std::mem::take(&mut self.languages);
        self.fallback_task = None;
        if !self.speaking {
            self.take_utterance();
        }
        if text.trim().is_empty() {
            tracing::debug!(parent: &self.ctx.span, "utterance without words");
            return false;
        }
        tracing::debug!(parent: &self.ctx.span, %text, "caller utterance");
        self.ctx
            .routes
            .supervisor
            .send(SupervisorMsg::Utterance { text, languages });
        true
    }

    fn audio(&mut self, ulaw: Bytes) {
        if self.speaking {
            if let Some(live) = self.live.as_mut() {
                live.input.audio(&ulaw);
            }
            self.keep(ulaw);
        } else {
            self.pre_roll_bytes += ulaw.len();
            self.pre_roll.push_back(ulaw);
            while self.pre_roll_bytes > PRE_ROLL_BYTES {
                let Some(old) = self.pre_roll.pop_front() else {
                    break;
                };
                self.pre_roll_bytes -= old.len();
            }
        }
    }

    /// Keeps audio for a replay, up to `MAX_UTTERANCE_BYTES`.
    fn keep(&mut self, ulaw: Bytes) {
        if self.keep_audio && self.utterance_bytes + ulaw.len() <= MAX_UTTERANCE_BYTES {
            self.utterance_bytes += ulaw.len();
            self.utterance.push(ulaw);
        }
    }

    /// The utterance's audio, leaving none (and no buffer) behind.
    fn take_utterance(&mut self) -> Vec<Bytes> {
        self.utterance_bytes = 0;
        std::mem::take(&mut self.utterance)
    }
}

impl Actor for Stt {
    type Msg = SttMsg;
    type State = SttState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Every language's STT is the same vendor, so this holds for them all.
        let keep_audio =
            ctx.providers.stt.sessions_can_drop() || ctx.providers.stt_fallback.is_some();
        let mut state = SttState {
            ctx,
            live: None,
            sessions: 0,
            connecting: None,
            connected_once: false,
            backoff: FIRST_BACKOFF,
            speaking: false,
            pre_roll: VecDeque::new(),
            pre_roll_bytes: 0,
            utterance: Vec::new(),
            utterance_bytes: 0,
            keep_audio,
            pending: None,
            utterances: 0,
            finals: Vec::new(),
            languages: Vec::new(),
            renew: false,
            fallback_task: None,
        };
        state.connect(&myself);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(live) = state.live.as_mut() {
            live.input.close();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SttMsg::Audio { ulaw, slot } => {
                state.audio(ulaw);
                drop(slot);
            }
            SttMsg::SpeechStarted => {
                state.speaking = true;
                if state.pending.is_none() {
                    state.take_utterance();
                }
                state.pre_roll_bytes = 0;
                while let Some(chunk) = state.pre_roll.pop_front() {
                    if let Some(live) = state.live.as_mut() {
                        live.input.audio(&chunk);
                    }
                    state.keep(chunk);
                }
            }
            SttMsg::EndOfSpeech { info, last_voice } => {
                state.speaking = false;
                state.utterances += 1;
                let id = state.utterances;
                let me = myself.clone();
                let wait = state.ctx.policy.timeouts.stt_final();
                let timer = AbortOnDrop::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = me.send_message(SttMsg::FinalTimeout { utterance: id });
                });
                state.pending = Some(Pending {
                    id,
                    info,
                    last_voice,
                    fallback: false,
                    _timer: timer,
                });
                match state.live.as_mut() {
                    Some(live) => live.input.end_of_speech(info),
                    // Down: the fallback takes it now (or the replay will, on reconnect).
                    None => state.transcribe_with_fallback(&myself),
                }
            }
            SttMsg::Provider { session, event } => {
                if state.live.as_ref().map(|l| l.id) != Some(session) {
                    return Ok(()); // from a session already replaced
                }
                match event {
                    Some(SttEvent::Interim { text }) => {
                        tracing::trace!(parent: &state.ctx.span, %text, "interim transcript");
                        // Only barge-in `confirm` reads them.
                        if state.ctx.policy.barge_in.mode == BargeInMode::Confirm
                            && !text.trim().is_empty()
                        {
                            state
                                .ctx
                                .routes
                                .supervisor
                                .send(SupervisorMsg::Interim { text });
                        }
                    }
                    Some(SttEvent::Final {
                        text,
                        utterance_end,
                        languages,
                    }) => {
                        if !text.trim().is_empty() {
                            state.finals.push(text);
                            state.languages.extend(languages);
                        }
                        if utterance_end && state.pending.as_ref().is_some_and(|p| !p.fallback) {
                            let provider = state.provider();
                            // Speech this long with no words was not noise:
                            // the caller was not understood.
                            let long = state
                                .pending
                                .as_ref()
                                .is_some_and(|p| p.info.speech_ms >= WORDLESS_SPEECH_MS);
                            if !state.complete(provider, None) && long {
                                state.unheard();
                            }
                        }
                    }
                    Some(SttEvent::Error(e)) => state.lost(&myself, e),
                    None => state.lost(&myself, ProviderError::Closed),
                }
            }
            SttMsg::Connected(Ok(session)) => state.install(&myself, session),
            SttMsg::Connected(Err(e)) => {
                let provider = state.provider();
                tracing::warn!(parent: &state.ctx.span, provider, error = %e, "stt connect failed");
                state.ctx.provider_fault(provider, &e);
                state.schedule_reconnect(&myself);
                if state.pending.as_ref().is_some_and(|p| !p.fallback) {
                    state.transcribe_with_fallback(&myself);
                }
            }
            SttMsg::Reconnect => state.connect(&myself),
            SttMsg::Renew => {
                state.renew = true;
                state.renew_if_idle(&myself);
            }
            SttMsg::FinalTimeout { utterance } => {
                if state
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.id == utterance && !p.fallback)
                {
                    let provider = state.provider();
                    let late = ProviderError::Timeout(state.ctx.policy.timeouts.stt_final());
                    state.ctx.provider_fault(provider, &late);
                    if state.ctx.providers.stt_fallback.is_some() {
                        tracing::warn!(parent: &state.ctx.span, provider, "no final transcript in time; using the fallback");
                        state.finals.clear();
                        state.transcribe_with_fallback(&myself);
                    } else {
                        tracing::warn!(parent: &state.ctx.span, provider, "no final transcript in time; using what was heard");
                        if !state.complete(provider, None) {
                            state.unheard();
                        }
                    }
                }
            }
            SttMsg::Transcribed { utterance, result } => {
                if state.pending.as_ref().is_none_or(|p| p.id != utterance) {
                    return Ok(());
                }
                let Some(fallback) = state.ctx.providers.stt_fallback.as_ref().map(|f| f.name())
                else {
                    return Ok(());
                };
                match result {
                    Ok(text) => {
                        let _ = state.complete(fallback, Some(text));
                    }
                    Err(e) => {
                        tracing::warn!(parent: &state.ctx.span, provider = fallback, error = %e, "fallback transcription failed; asking the caller to say it again");
                        state.ctx.provider_fault(fallback, &e);
                        if !state.complete(fallback, None) {
                            state.unheard();
                        }
                    }
                }
            }
        }
        state.renew_if_idle(&myself);
        Ok(())
    }
}
