//! The conversation as the LLM sees it: what the caller said and what the
//! caller actually *heard* of the bot.
//!
//! Kept outside the `Llm` actor (in the call context) so that a restart of
//! `Llm` does not make the bot forget the conversation.

use crate::protocol::Generation;
use crate::providers::ToolCall;
/// The conversation types are the LLM providers' input; the history keeps them.
pub use crate::providers::llm::{Speaker, Turn};

/// The generation of turns read back from records: none of this tree's
/// turns has it, so nothing this tree cancels or cuts reaches them.
pub const PAST: Generation = Generation::MAX;

/// What a call taken over from a lost node brings from its records.
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    /// Whether the call was taken over (false: a new call).
    pub taken_over: bool,
    /// Its turns so far.
    pub turns: Vec<PastTurn>,
    /// The outcome slots recorded so far.
    pub slots: serde_json::Map<String, serde_json::Value>,
}

impl Resumed {
    pub fn is_resumed(&self) -> bool {
        self.taken_over
    }
}

/// One turn of an earlier stream of the call, read back from its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastTurn {
    pub speaker: Speaker,
    /// What the caller heard of it, for a bot turn.
    pub text: String,
}

/// How much of a bot turn the caller heard before interrupting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heard {
    /// Sentences played to the end.
    pub sentences: usize,
    /// Fraction (0..=1) of the next sentence's audio that was played.
    pub partial: f32,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    turns: Vec<Turn>,
    /// The sentences of the last interrupted bot turn the caller did not
    /// hear (from the one cut off), to resume after a false interruption.
    unheard: Option<(Generation, Vec<String>)>,
}

impl History {
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// The history of a call taken over from a lost node: its turns so far,
    /// as records kept them (tool rounds are not on record).
    pub fn resumed(past: &[PastTurn]) -> Self {
        let mut history = Self::default();
        for turn in past.iter().filter(|t| !t.text.trim().is_empty()) {
            match turn.speaker {
                Speaker::Caller => history.push_caller(&turn.text),
                Speaker::Bot => history.push_bot_sentence(PAST, &turn.text),
                Speaker::Tool => {}
            }
        }
        history
    }

    /// Adds caller words; consecutive caller utterances merge into one turn.
    pub fn push_caller(&mut self, text: &str) {
        if let Some(last) = self.turns.last_mut()
            && last.speaker == Speaker::Caller
        {
            last.sentences.push(text.to_owned());
            return;
        }
        self.turns.push(Turn {
            speaker: Speaker::Caller,
            sentences: vec![text.to_owned()],
            generation: 0,
            interrupted: false,
            tool_calls: Vec::new(),
            tool_call_id: None,
            said: None,
        });
    }

    /// Records tools the bot called in turn `generation`, and their results.
    pub fn push_tool_round(&mut self, generation: Generation, calls: Vec<(ToolCall, String)>) {
        let (calls, results): (Vec<_>, Vec<_>) = calls.into_iter().unzip();
        let ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
        match self.turns.last_mut() {
            Some(last)
                if last.speaker == Speaker::Bot
                    && last.generation == generation
                    && last.tool_calls.is_empty() =>
            {
                last.tool_calls = calls;
            }
            _ => self.turns.push(Turn {
                speaker: Speaker::Bot,
                sentences: Vec::new(),
                generation,
                interrupted: false,
                tool_calls: calls,
                tool_call_id: None,
                said: None,
            }),
        }
        for (id, result) in ids.into_iter().zip(results) {
            self.turns.push(Turn {
                speaker: Speaker::Tool,
                sentences: vec![result],
                generation,
                interrupted: false,
                tool_calls: Vec::new(),
                tool_call_id: Some(id),
                said: None,
            });
        }
    }

    /// Adds one sentence the bot is about to speak in turn `generation`.
    pub fn push_bot_sentence(&mut self, generation: Generation, sentence: &str) {
        match self.turns.last_mut() {
            Some(last) if last.speaker == Speaker::Bot && last.generation == generation => {
                last.sentences.push(sentence.to_owned());
            }
            _ => {
                // A new bot turn: the last cut one can no longer be resumed.
                self.unheard = None;
                self.turns.push(Turn {
                    speaker: Speaker::Bot,
                    sentences: vec![sentence.to_owned()],
                    generation,
                    interrupted: false,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                    said: None,
                });
            }
        }
    }

    /// Keeps the newest `max` turns (at least), dropping older ones — they
    /// are on record already — so a long call costs what a short one does
    /// and the model's context stays bounded. The kept part never starts
    /// with a tool result: a tool call and its results stay together.
    pub fn trim_to(&mut self, max: usize) {
        if self.turns.len() <= max {
            return;
        }
        let mut start = self.turns.len() - max;
        while self
            .turns
            .get(start)
            .is_some_and(|t| t.speaker == Speaker::Tool)
        {
            start += 1;
        }
        self.turns.drain(..start.min(self.turns.len()));
    }

    /// What the caller did not hear of interrupted turn `generation`, from
    /// the sentence cut off.
    pub fn take_unheard(&mut self, generation: Generation) -> Vec<String> {
        match self.unheard.take() {
            Some((g, rest)) if g == generation => rest,
            _ => Vec::new(),
        }
    }

    /// Cuts bot turn `generation` down to what the caller heard and marks it interrupted.
    /// A turn of which nothing was heard is removed.
    pub fn cut_to_heard(&mut self, generation: Generation, heard: Heard) {
        let Some(pos) = self.turns.iter().rposition(|t| {
            t.speaker == Speaker::Bot && t.generation == generation && !t.sentences.is_empty()
        }) else {
            return;
        };
        let turn = &mut self.turns[pos];
        self.unheard = Some((
            generation,
            turn.sentences
                .iter()
                .skip(heard.sentences)
                .cloned()
                .collect(),
        ));
        let mut kept: Vec<String> = turn
            .sentences
            .iter()
            .take(heard.sentences)
            .cloned()
            .collect();
        if let Some(partial) = turn.sentences.get(heard.sentences) {
            let words: Vec<&str> = partial.split_whitespace().collect();
            let n = (words.len() as f32 * heard.partial.clamp(0.0, 1.0)).floor() as usize;
            if n > 0 {
                kept.push(words[..n].join(" "));
            }
        }
        if kept.is_empty() && turn.tool_calls.is_empty() {
            self.turns.remove(pos);
        } else {
            turn.said = Some(turn.text());
            turn.sentences = kept;
            turn.interrupted = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_history_keeps_its_turns_whatever_the_new_tree_cuts() {
        let past = [
            (Speaker::Bot, "Hello."),
            (Speaker::Caller, "What are your hours?"),
            (Speaker::Bot, "Nine to five."),
            (Speaker::Caller, "  "),
        ]
        .map(|(speaker, text)| PastTurn {
            speaker,
            text: text.into(),
        });
        let mut h = History::resumed(&past);
        // The new tree's first cancellation cuts its own turn 0, never these.
        h.cut_to_heard(
            0,
            Heard {
                sentences: 0,
                partial: 0.0,
            },
        );
        h.push_caller("And on Sunday?");
        let said: Vec<(Speaker, String)> =
            h.turns().iter().map(|t| (t.speaker, t.text())).collect();
        assert_eq!(
            said,
            [
                (Speaker::Bot, "Hello.".to_owned()),
                (Speaker::Caller, "What are your hours?".to_owned()),
                (Speaker::Bot, "Nine to five.".to_owned()),
                (Speaker::Caller, "And on Sunday?".to_owned()),
            ]
        );
    }

    #[test]
    fn caller_utterances_merge() {
        let mut h = History::default();
        h.push_caller("hello");
        h.push_caller("are you there");
        assert_eq!(h.turns().len(), 1);
        assert_eq!(h.turns()[0].text(), "hello are you there");
    }

    #[test]
    fn heard_part_keeps_whole_sentences_and_a_word_fraction() {
        let mut h = History::default();
        h.push_bot_sentence(3, "First sentence here.");
        h.push_bot_sentence(3, "one two three four five six seven eight.");
        h.push_bot_sentence(3, "Never heard.");
        h.cut_to_heard(
            3,
            Heard {
                sentences: 1,
                partial: 0.5,
            },
        );
        let t = &h.turns()[0];
        assert!(t.interrupted);
        assert_eq!(t.text(), "First sentence here. one two three four");
    }

    #[test]
    fn trimming_keeps_the_newest_turns_and_tool_rounds_whole() {
        let mut h = History::default();
        for g in 1..=50u64 {
            h.push_caller(&format!("question {g}"));
            if g % 5 == 0 {
                let call = ToolCall {
                    id: format!("t{g}"),
                    name: "record_outcome".into(),
                    arguments: "{}".into(),
                };
                h.push_tool_round(g, vec![(call.clone(), "ok".into()), (call, "ok".into())]);
            }
            h.push_bot_sentence(g, &format!("Answer {g}."));
        }
        h.trim_to(10);
        assert!(
            h.turns().len() <= 10 && h.turns().len() >= 8,
            "{}",
            h.turns().len()
        );
        assert_ne!(h.turns()[0].speaker, Speaker::Tool);
        assert_eq!(h.turns().last().unwrap().text(), "Answer 50.");
        // A long call's history stays the size of a short one's.
        for g in 51..=500u64 {
            h.push_caller("more");
            h.push_bot_sentence(g, "Sure.");
            h.trim_to(10);
        }
        assert!(h.turns().len() <= 10);
    }

    #[test]
    fn nothing_heard_removes_the_turn() {
        let mut h = History::default();
        h.push_caller("hi");
        h.push_bot_sentence(2, "Hello there.");
        h.cut_to_heard(
            2,
            Heard {
                sentences: 0,
                partial: 0.0,
            },
        );
        assert_eq!(h.turns().len(), 1);
        assert_eq!(h.turns()[0].speaker, Speaker::Caller);
    }
}
