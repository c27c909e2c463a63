//! What the call core knows of a call Hark placed: the lead's variables,
//! whether the carrier will say who answered, and its verdict. The
//! runtime's dialer fills these; the supervisor's `answering` acts on them.

/// Who answered an outbound call, as the carrier's detection tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    Human,
    /// A machine; `ended`: its greeting is over (after the beep, or silence).
    Machine {
        ended: bool,
    },
    Fax,
    /// Detection could not tell.
    Unknown,
}

impl AnsweredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::Machine { ended: false } => "machine_start",
            AnsweredBy::Machine { ended: true } => "machine_end",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
        }
    }
}

/// What is known about a call Hark placed when its stream starts.
#[derive(Debug, Clone, Default)]
pub struct Placed {
    /// The lead's variables: `{caller.NAME}` in the prompt and voicemail.
    pub lead: std::collections::BTreeMap<String, String>,
    /// The carrier was asked for an answering-machine verdict: the callee's
    /// first words wait for it.
    pub machine_detection: bool,
    /// A verdict that came before the stream did.
    pub verdict: Option<AnsweredBy>,
}
