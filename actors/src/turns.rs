//! The turn controller: who speaks next. Pure — events in, commands out; no
//! I/O, no clock, no actors — so every rule of turn-taking is a table test
//! and the supervisor only carries commands out.
//!
//! It owns the turn generation: every bot turn started and every turn
//! cancelled takes the next one, and anything stamped with an older one is
//! stale. The rules:
//! - the caller's words start a reply, or wait while an uninterruptible bot
//!   turn plays, and are answered together when it has played;
//! - speech (or a key) over the bot cancels its turn everywhere — `clear`
//!   only if its audio already reached the carrier — unless barge-in is off;
//! - a failed reply turn, or an utterance nobody could transcribe, is
//!   answered with the fallback line;
//! - an ending (goodbye, apology) cancels everything, says its line and
//!   closes when that has played, or when the end timer fires;
//! - the bot's `end_call` closes the call once the turn it ended has played,
//!   unless the caller cut in first.

use tokio::time::Instant;

use crate::protocol::{EndReason, Generation};

/// What a bot turn says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnKind {
    /// An LLM reply to the caller's words.
    Reply,
    /// A fixed line (greeting, fallback, goodbye, apology).
    Say(String),
}

/// The fixed lines the controller may say: the policy's.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    pub greeting: String,
    pub fallback: String,
    pub goodbye: String,
    pub apology: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The call's tree is up.
    CallStarted,
    BargeIn,
    SpeechEnded {
        last_voice: Instant,
    },
    /// The caller's words (an utterance, or `pressed N` for a key).
    Utterance {
        text: String,
    },
    /// The caller spoke but nothing could transcribe it.
    Unheard,
    Dtmf {
        digit: char,
    },
    TurnFailed {
        generation: Generation,
    },
    PlaybackStarted {
        generation: Generation,
    },
    PlaybackFinished {
        generation: Generation,
    },
    /// The LLM called `end_call` during turn `generation`.
    BotEndsCall {
        generation: Generation,
    },
    /// End with the goodbye line (shutdown, maximum duration).
    EndCall {
        reason: EndReason,
    },
    /// A rule answers the caller's words with `line` instead of a reply.
    Answer {
        line: String,
    },
    /// Say what the interrupted turn had not said (`line`): the
    /// interruption was false. Nothing if the caller has taken the turn.
    Resume {
        line: String,
    },
    /// A rule ends the call with `line`.
    EndWith {
        reason: EndReason,
        line: String,
    },
    /// End now, silently (the stream is gone).
    Hangup {
        reason: EndReason,
    },
    /// The goodbye (or apology) did not finish in time.
    EndTimeout,
    /// A child was restarted; `speaks`: one of those a bot turn needs.
    ChildRestarted {
        speaks: bool,
    },
    /// A child failed while the call was ending.
    ChildLostWhileEnding {
        speaks: bool,
    },
    /// Children failed more often than the restart budget allows.
    RestartBudgetExhausted,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start bot turn `generation`; `speech_end` starts its response clock.
    StartTurn {
        generation: Generation,
        kind: TurnKind,
        caller_text: Option<String>,
        speech_end: Option<Instant>,
    },
    /// Cancel every turn before `generation`; `clear` the carrier's buffer.
    Cancel { generation: Generation, clear: bool },
    /// The caller cut into turn `generation` while it played.
    BargedIn { generation: Generation },
    /// The caller spoke before turn `generation` played: it was dropped.
    Dropped { generation: Generation },
    /// Turn `generation` failed; the fallback line follows.
    TurnFailed { generation: Generation },
    /// The bot will hang up after turn `generation`.
    HangUpAfter { generation: Generation },
    /// Give the last line `goodbye_timeout` to play, then `EndTimeout`.
    ArmEndTimer,
    /// Close the stream and stop the call.
    Close(EndReason),
}

#[derive(Debug, Clone)]
struct BotTurn {
    generation: Generation,
    kind: TurnKind,
    audio_started: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ending {
    reason: EndReason,
    generation: Generation,
}

#[derive(Debug)]
pub struct TurnController {
    lines: Lines,
    barge_in: bool,
    generation: Generation,
    bot: Option<BotTurn>,
    last_speech_end: Option<Instant>,
    /// Caller words heard while an uninterruptible bot turn was playing.
    waiting: Vec<String>,
    ending: Option<Ending>,
    hang_up_after: Option<Generation>,
    /// The turn the caller last cut into, until they take the turn: it may
    /// be resumed (`Event::Resume`).
    resumable: Option<Generation>,
    closed: bool,
    out: Vec<Command>,
}

impl TurnController {
    pub fn new(lines: Lines, barge_in: bool) -> Self {
        Self {
            lines,
            barge_in,
            generation: 0,
            bot: None,
            last_speech_end: None,
            waiting: Vec::new(),
            ending: None,
            hang_up_after: None,
            resumable: None,
            closed: false,
            out: Vec::new(),
        }
    }

    /// The lines of the language the call switched to.
    pub fn set_lines(&mut self, lines: Lines) {
        self.lines = lines;
    }

    /// The bot turn whose audio is playing, if any.
    pub fn playing(&self) -> Option<Generation> {
        self.bot
            .as_ref()
            .filter(|b| b.audio_started)
            .map(|b| b.generation)
    }

    /// The interrupted turn that may be resumed, if any.
    pub fn resumable(&self) -> Option<Generation> {
        self.resumable
    }

    /// The bot turn in progress, if any.
    pub fn active(&self) -> Option<Generation> {
        self.bot.as_ref().map(|b| b.generation)
    }

    /// Why the call is ending, once it is.
    pub fn ending(&self) -> Option<EndReason> {
        self.ending.map(|e| e.reason)
    }

    /// Applies `event`; the commands to carry out, in order.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::CallStarted => {
                if !self.lines.greeting.trim().is_empty() {
                    let greeting = self.lines.greeting.clone();
                    self.start_turn(TurnKind::Say(greeting), None, None);
                }
            }
            Event::BargeIn => self.interrupt(),
            Event::SpeechEnded { last_voice } => self.last_speech_end = Some(last_voice),
            Event::Utterance { text } => {
                let speech_end = self.last_speech_end.take();
                self.caller_words(text, speech_end);
            }
            Event::Unheard => {
                self.last_speech_end = None;
                if self.ending.is_none() && self.bot.is_none() {
                    let line = self.lines.fallback.clone();
                    self.start_turn(TurnKind::Say(line), None, None);
                }
            }
            Event::Dtmf { digit } => {
                self.interrupt();
                self.caller_words(format!("pressed {digit}"), None);
            }
            Event::TurnFailed { generation } => {
                if self.active() == Some(generation) && self.ending.is_none() {
                    self.out.push(Command::TurnFailed { generation });
                    self.cancel_bot();
                    let line = self.lines.fallback.clone();
                    self.start_turn(TurnKind::Say(line), None, None);
                }
            }
            Event::PlaybackStarted { generation } => {
                if let Some(bot) = self.bot.as_mut().filter(|b| b.generation == generation) {
                    bot.audio_started = true;
                }
            }
            Event::PlaybackFinished { generation } => self.played(generation),
            Event::BotEndsCall { generation } => {
                // If the turn was interrupted meanwhile, the caller is talking: stay.
                if self.active() == Some(generation) {
                    self.hang_up_after = Some(generation);
                    self.out.push(Command::HangUpAfter { generation });
                }
            }
            Event::EndCall { reason } => {
                let goodbye = self.lines.goodbye.clone();
                self.end_with(reason, goodbye);
            }
            Event::Answer { line } => {
                if self.ending.is_none() {
                    self.cancel_bot();
                    self.waiting.clear();
                    self.start_turn(TurnKind::Say(line), None, None);
                }
            }
            Event::Resume { line } => {
                if self.resumable.take().is_some()
                    && self.bot.is_none()
                    && self.ending.is_none()
                    && !line.trim().is_empty()
                {
                    self.start_turn(TurnKind::Say(line), None, None);
                }
            }
            Event::EndWith { reason, line } => self.end_with(reason, line),
            Event::Hangup { reason } => self.close(reason),
            Event::EndTimeout => {
                if let Some(ending) = self.ending {
                    self.close(ending.reason);
                }
            }
            Event::ChildRestarted { speaks } => {
                // A turn that lost its LLM, TTS or playback state is spoken again from the start.
                if speaks && let Some(bot) = self.cancel_bot() {
                    self.start_turn(bot.kind, None, None);
                }
            }
            Event::ChildLostWhileEnding { speaks } => {
                if speaks && let Some(ending) = self.ending {
                    self.close(ending.reason);
                }
            }
            Event::RestartBudgetExhausted => {
                let apology = self.lines.apology.clone();
                self.end_with(EndReason::RestartBudget, apology);
            }
        }
        std::mem::take(&mut self.out)
    }

    fn next_generation(&mut self) -> Generation {
        self.generation += 1;
        self.generation
    }

    fn start_turn(
        &mut self,
        kind: TurnKind,
        caller_text: Option<String>,
        speech_end: Option<Instant>,
    ) {
        let generation = self.next_generation();
        self.resumable = None;
        self.out.push(Command::StartTurn {
            generation,
            kind: kind.clone(),
            caller_text,
            speech_end,
        });
        self.bot = Some(BotTurn {
            generation,
            kind,
            audio_started: false,
        });
    }

    fn cancel_bot(&mut self) -> Option<BotTurn> {
        let bot = self.bot.take()?;
        let generation = self.next_generation();
        self.out.push(Command::Cancel {
            generation,
            clear: bot.audio_started,
        });
        Some(bot)
    }

    fn caller_words(&mut self, text: String, speech_end: Option<Instant>) {
        if self.ending.is_some() || text.trim().is_empty() {
            return;
        }
        if self.bot.is_some() {
            self.waiting.push(text);
        } else {
            self.start_turn(TurnKind::Reply, Some(text), speech_end);
        }
    }

    fn interrupt(&mut self) {
        if self.ending.is_some() || !self.barge_in {
            return;
        }
        if let Some(bot) = self.cancel_bot() {
            let generation = bot.generation;
            if bot.audio_started {
                self.resumable = Some(generation);
            }
            self.out.push(if bot.audio_started {
                Command::BargedIn { generation }
            } else {
                Command::Dropped { generation }
            });
        }
    }

    fn played(&mut self, generation: Generation) {
        if let Some(ending) = self.ending {
            if ending.generation == generation {
                self.close(ending.reason);
            }
            return;
        }
        if self.hang_up_after == Some(generation) {
            self.close(EndReason::BotEnded);
            return;
        }
        if self.active() == Some(generation) {
            self.bot = None;
            if !self.waiting.is_empty() {
                let text = std::mem::take(&mut self.waiting).join(" ");
                self.start_turn(TurnKind::Reply, Some(text), None);
            }
        }
    }

    fn end_with(&mut self, reason: EndReason, line: String) {
        if self.ending.is_some() {
            return;
        }
        self.cancel_bot();
        self.waiting.clear();
        self.start_turn(TurnKind::Say(line), None, None);
        self.ending = Some(Ending {
            reason,
            generation: self.generation,
        });
        self.out.push(Command::ArmEndTimer);
    }

    fn close(&mut self, reason: EndReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.out.push(Command::Close(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;
    use Event as E;

    fn lines() -> Lines {
        Lines {
            greeting: "Hello.".into(),
            fallback: "Sorry?".into(),
            goodbye: "Bye.".into(),
            apology: "Apologies.".into(),
        }
    }

    fn say(generation: Generation, line: &str) -> Command {
        StartTurn {
            generation,
            kind: TurnKind::Say(line.into()),
            caller_text: None,
            speech_end: None,
        }
    }

    fn reply(generation: Generation, text: &str, speech_end: Option<Instant>) -> Command {
        StartTurn {
            generation,
            kind: TurnKind::Reply,
            caller_text: Some(text.into()),
            speech_end,
        }
    }

    fn words(text: &str) -> Event {
        E::Utterance { text: text.into() }
    }

    /// Runs `steps` (event, the commands it must give) on a fresh controller.
    fn run(barge_in: bool, steps: &[(Event, Vec<Command>)]) {
        let mut c = TurnController::new(lines(), barge_in);
        for (i, (event, want)) in steps.iter().enumerate() {
            let got = c.on(event.clone());
            assert_eq!(&got, want, "step {i}: {event:?}");
        }
    }

    #[test]
    fn an_interrupted_turn_may_be_resumed_until_the_caller_takes_the_turn() {
        let mut c = TurnController::new(lines(), true);
        c.on(E::CallStarted);
        c.on(E::PlaybackStarted { generation: 1 });
        c.on(E::BargeIn);
        assert_eq!(c.resumable(), Some(1));
        assert_eq!(
            c.on(E::Resume {
                line: "the rest".into()
            }),
            [say(3, "the rest")]
        );
        assert_eq!(c.resumable(), None, "once");
        c.on(E::PlaybackStarted { generation: 3 });
        c.on(E::BargeIn);
        assert_eq!(c.resumable(), Some(3));
        assert_eq!(
            c.on(words("a real question")),
            [reply(5, "a real question", None)]
        );
        assert_eq!(
            c.on(E::Resume {
                line: "late".into()
            }),
            [],
            "the caller took the turn"
        );
        // Cut before its audio started: nothing to resume.
        c.on(E::BargeIn);
        assert_eq!(c.resumable(), None);
    }

    #[test]
    fn the_greeting_plays_then_the_callers_words_get_a_reply_timed_from_their_speech() {
        let t = Instant::now();
        run(
            true,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (E::PlaybackFinished { generation: 1 }, vec![]),
                (E::SpeechEnded { last_voice: t }, vec![]),
                (words("hours"), vec![reply(2, "hours", Some(t))]),
            ],
        );
    }

    #[test]
    fn no_greeting_no_turn() {
        let mut c = TurnController::new(
            Lines {
                greeting: "  ".into(),
                ..lines()
            },
            true,
        );
        assert_eq!(c.on(E::CallStarted), vec![]);
    }

    #[test]
    fn speech_over_a_playing_turn_cancels_it_with_a_clear() {
        run(
            true,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (
                    E::BargeIn,
                    vec![
                        Cancel {
                            generation: 2,
                            clear: true,
                        },
                        BargedIn { generation: 1 },
                    ],
                ),
                // Its late playback report changes nothing.
                (E::PlaybackFinished { generation: 1 }, vec![]),
                (words("stop"), vec![reply(3, "stop", None)]),
            ],
        );
    }

    #[test]
    fn speech_before_a_reply_plays_drops_it_without_a_clear() {
        run(
            true,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (
                    E::BargeIn,
                    vec![
                        Cancel {
                            generation: 2,
                            clear: false,
                        },
                        Dropped { generation: 1 },
                    ],
                ),
            ],
        );
    }

    #[test]
    fn without_barge_in_words_wait_for_the_turn_and_are_answered_together() {
        run(
            false,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (E::BargeIn, vec![]),
                (words("one"), vec![]),
                (E::Dtmf { digit: '2' }, vec![]),
                (
                    E::PlaybackFinished { generation: 1 },
                    vec![reply(2, "one pressed 2", None)],
                ),
            ],
        );
    }

    #[test]
    fn a_key_cuts_in_and_is_the_callers_turn() {
        run(
            true,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (
                    E::Dtmf { digit: '#' },
                    vec![
                        Cancel {
                            generation: 2,
                            clear: true,
                        },
                        BargedIn { generation: 1 },
                        reply(3, "pressed #", None),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn blank_words_start_nothing() {
        run(true, &[(words("  "), vec![])]);
    }

    #[test]
    fn an_unheard_utterance_gets_the_fallback_line_unless_the_bot_is_talking() {
        run(
            true,
            &[(E::Unheard, vec![say(1, "Sorry?")]), (E::Unheard, vec![])],
        );
    }

    #[test]
    fn a_failed_reply_is_cancelled_and_followed_by_the_fallback_line() {
        run(
            true,
            &[
                (words("hi"), vec![reply(1, "hi", None)]),
                // A stale failure (another turn) is ignored.
                (E::TurnFailed { generation: 7 }, vec![]),
                (
                    E::TurnFailed { generation: 1 },
                    vec![
                        TurnFailed { generation: 1 },
                        Cancel {
                            generation: 2,
                            clear: false,
                        },
                        say(3, "Sorry?"),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn the_bot_hangs_up_after_its_turn_has_played() {
        run(
            true,
            &[
                (words("bye"), vec![reply(1, "bye", None)]),
                (
                    E::BotEndsCall { generation: 1 },
                    vec![HangUpAfter { generation: 1 }],
                ),
                (
                    E::PlaybackFinished { generation: 1 },
                    vec![Close(EndReason::BotEnded)],
                ),
            ],
        );
    }

    #[test]
    fn end_call_on_an_interrupted_turn_is_ignored() {
        run(
            true,
            &[
                (words("bye"), vec![reply(1, "bye", None)]),
                (
                    E::BargeIn,
                    vec![
                        Cancel {
                            generation: 2,
                            clear: false,
                        },
                        Dropped { generation: 1 },
                    ],
                ),
                (E::BotEndsCall { generation: 1 }, vec![]),
                (E::PlaybackFinished { generation: 1 }, vec![]),
            ],
        );
    }

    #[test]
    fn the_goodbye_cancels_the_turn_ignores_the_caller_and_closes_when_played() {
        run(
            true,
            &[
                (words("hi"), vec![reply(1, "hi", None)]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (
                    E::EndCall {
                        reason: EndReason::Shutdown,
                    },
                    vec![
                        Cancel {
                            generation: 2,
                            clear: true,
                        },
                        say(3, "Bye."),
                        ArmEndTimer,
                    ],
                ),
                (E::BargeIn, vec![]),
                (words("wait"), vec![]),
                (
                    E::EndCall {
                        reason: EndReason::MaxDuration,
                    },
                    vec![],
                ),
                (
                    E::PlaybackFinished { generation: 3 },
                    vec![Close(EndReason::Shutdown)],
                ),
                (E::EndTimeout, vec![]),
            ],
        );
    }

    #[test]
    fn a_goodbye_that_does_not_finish_is_cut_by_the_end_timer() {
        run(
            true,
            &[
                (
                    E::EndCall {
                        reason: EndReason::MaxDuration,
                    },
                    vec![say(1, "Bye."), ArmEndTimer],
                ),
                (E::EndTimeout, vec![Close(EndReason::MaxDuration)]),
            ],
        );
    }

    #[test]
    fn a_rule_answers_with_its_line_over_the_bot_then_ends_the_call_with_another() {
        run(
            true,
            &[
                (E::CallStarted, vec![say(1, "Hello.")]),
                (E::PlaybackStarted { generation: 1 }, vec![]),
                (
                    E::Answer {
                        line: "Please be polite.".into(),
                    },
                    vec![
                        Cancel {
                            generation: 2,
                            clear: true,
                        },
                        say(3, "Please be polite."),
                    ],
                ),
                (E::PlaybackFinished { generation: 3 }, vec![]),
                (
                    E::EndWith {
                        reason: EndReason::Profanity,
                        line: "Goodbye now.".into(),
                    },
                    vec![say(4, "Goodbye now."), ArmEndTimer],
                ),
                // Nothing the caller says is answered any more.
                (words("sorry"), vec![]),
                (
                    E::Answer {
                        line: "Please be polite.".into(),
                    },
                    vec![],
                ),
                (
                    E::PlaybackFinished { generation: 4 },
                    vec![Close(EndReason::Profanity)],
                ),
            ],
        );
    }

    #[test]
    fn a_hangup_closes_once() {
        run(
            true,
            &[
                (
                    E::Hangup {
                        reason: EndReason::Stop,
                    },
                    vec![Close(EndReason::Stop)],
                ),
                (
                    E::Hangup {
                        reason: EndReason::SocketClosed,
                    },
                    vec![],
                ),
            ],
        );
    }

    #[test]
    fn a_restarted_speaking_child_makes_the_turn_start_again() {
        run(
            true,
            &[
                (words("hi"), vec![reply(1, "hi", None)]),
                (E::ChildRestarted { speaks: false }, vec![]),
                (
                    E::ChildRestarted { speaks: true },
                    vec![
                        Cancel {
                            generation: 2,
                            clear: false,
                        },
                        StartTurn {
                            generation: 3,
                            kind: TurnKind::Reply,
                            caller_text: None,
                            speech_end: None,
                        },
                    ],
                ),
            ],
        );
    }

    #[test]
    fn an_exhausted_restart_budget_ends_with_the_apology_and_a_lost_speaker_closes() {
        run(
            true,
            &[
                (
                    E::RestartBudgetExhausted,
                    vec![say(1, "Apologies."), ArmEndTimer],
                ),
                (E::ChildLostWhileEnding { speaks: false }, vec![]),
                (
                    E::ChildLostWhileEnding { speaks: true },
                    vec![Close(EndReason::RestartBudget)],
                ),
            ],
        );
    }
}
