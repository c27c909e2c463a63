//! The per-call supervised actor tree of Hark.
//!
//! ```text
//! CallSupervisor ── MediaIn ─┬─> Vad ──> (supervisor: speech start/end, barge-in)
//!                            └─> Stt ──> (supervisor: caller's words)
//!                   Policy ──> Tts ──> MediaOut ──> socket writer (runtime)
//! ```
//!
//! One file per actor, its messages beside it. The runtime feeds Twilio
//! messages in through [`media_in::deliver_media`], [`media_in::deliver_dtmf`]
//! and [`media_in::deliver_mark`], and drains [`call::Outbound`] messages to
//! the socket.
//!
//! # Layout
//!
//! - Actors: [`call_supervisor`], [`media_in`], [`vad`], [`stt`], [`policy`],
//!   [`tts`], [`media_out`]; what they share is in [`call`].
//! - Pure logic inside them: [`turns`] (the turn controller: who speaks
//!   next, events in and commands out), [`sentences`] (streamed text →
//!   sentences, UTF-8-safe), [`history`] (what was said and heard),
//!   [`tools`], [`ulaw`].
//! - [`providers`] — STT, LLM and TTS behind small traits, one file per provider.
//! - [`policy_file`] — the policy AI Ops edit, validated; the built-in default.
//! - [`records`] — what a call leaves on record; [`backlog`] — mailbox bounds;
//!   [`metrics`] — metric names; [`fault`] — the `Child` wrapper every
//!   child actor runs in (live-actor count, test-only fault injection);
//!   [`util`] — guards tying tasks to actors.

pub mod backlog;
pub mod call;
pub mod call_supervisor;
pub mod fault;
pub mod history;
pub mod media_in;
pub mod media_out;
pub mod metrics;
pub mod policy;
pub mod policy_file;
pub mod providers;
pub mod records;
pub mod sentences;
pub mod stt;
pub mod tools;
pub mod tts;
pub mod turns;
pub mod ulaw;
pub mod util;
pub mod vad;

pub use call::{CallContext, CallIds, CallSettings, EndReason, MarkId, Outbound};
pub use call_supervisor::{CallArgs, CallHandle, SupervisorMsg, start_call};
pub use policy_file::{PolicyError, PolicyFile};
pub use providers::{Keys, Notice, Providers};
