//! The per-call supervised actor tree of Hark: the call core.
//!
//! ```text
//! CallSupervisor ── MediaIn ─┬─> Vad ──> (supervisor: speech start/end, barge-in)
//!                            └─> Stt ──> (supervisor: caller's words)
//!                   Llm ──> Tts ──> MediaOut ──> carrier commands (runtime)
//!                   Transfer ──> call control (runtime's TransferDesk)
//! ```
//!
//! The core knows no carrier: a carrier adapter hands it
//! [`hark_carrier::port::Event`]s through [`media_in::deliver`] and drains
//! [`protocol::Command`]s to its stream; [`protocol::Capabilities`] say
//! whether the carrier reports playback (else `MediaOut` estimates it).
//!
//! # Layout
//!
//! - [`protocol`] — the leaf: call ids, end reasons, child kinds and every
//!   actor's message enum (ARCHITECTURE's message table in code).
//! - [`context`] — what a call's actors share (`CallContext`, `CallArgs`);
//!   [`routes`] — where each restartable child is now; [`settings`] — the
//!   `[call]` knobs; [`outbound`] — what a call Hark placed brings (the
//!   lead, the answering-machine verdict).
//! - Actors, one file each: [`call_supervisor`], [`media_in`], [`vad`],
//!   [`stt`], [`llm`] (the bot's turn), [`tts`], [`media_out`], [`transfer`]
//!   (handing the caller to a person); [`child`] —
//!   the `Child` wrapper every child runs in (live-actor count, the
//!   test-only [`fault`] plan).
//! - Pure logic inside them: [`turns`] (the turn controller: who speaks
//!   next, events in and commands out), [`sentences`] (streamed text →
//!   sentences, UTF-8-safe), [`history`] (what was said and heard),
//!   [`tools`], [`ulaw`], [`beep`] (an answering machine's beep).
//! - [`providers`] — STT, LLM and TTS behind small traits, one file per
//!   provider; they import nothing from the call core.
//! - [`policy`] — the policy AI Ops edit, one file per section, each
//!   validating itself; the built-in default.
//! - [`rules`] — what a live call enforces whatever the model says (consent
//!   to record, profanity, a silent caller), pure, asked by the supervisor
//!   before the turn controller; [`silence`] — the supervisor's timer for
//!   the caller's silence.
//! - [`simulate`] — a call in text (`hark policy simulate`, the behaviour
//!   fixtures): typed lines through the same actors, the record as output.
//! - [`recording`] — the call's recording tap (both channels as heard, a
//!   bounded window handed to the runtime's writer).
//! - [`records`] — what a call leaves on record; [`backlog`] — mailbox bounds;
//!   [`metrics`] — metric names; [`util`] — guards tying tasks to actors.

pub mod backlog;
pub mod beep;
pub mod call_supervisor;
pub mod child;
pub mod context;
pub mod fault;
pub mod history;
pub mod llm;
pub mod media_in;
pub mod media_out;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod protocol;
pub mod providers;
pub mod recording;
pub mod records;
pub mod routes;
pub mod rules;
pub mod sentences;
pub mod settings;
pub mod silence;
pub mod simulate;
pub mod stt;
pub mod tools;
pub mod transfer;
pub mod tts;
pub mod turns;
pub mod ulaw;
pub mod util;
pub mod vad;

pub use call_supervisor::{CallHandle, start_call};
pub use context::{CallArgs, CallContext};
pub use policy::{PolicyError, PolicyFile};
pub use protocol::{CallIds, Capabilities, Checkpoint, Command, EndReason, SupervisorMsg};
pub use providers::{Keys, Notice, Providers};
pub use settings::CallSettings;
