//! The per-call supervised actor tree of Hark.
//!
//! ```text
//! CallSupervisor ── MediaIn ─┬─> Vad ──> (supervisor: speech start/end, barge-in)
//!                            └─> Stt ──> (supervisor: caller's words)
//!                   Policy ──> Tts ──> MediaOut ──> socket writer (runtime)
//! ```
//!
//! One file per actor, its messages beside it. The runtime feeds Twilio
//! messages in through [`media_in::deliver_media`] and the `MediaIn` route,
//! and drains [`call::Outbound`] messages to the socket.

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
pub mod ulaw;
pub mod util;
pub mod vad;

pub use call::{CallContext, CallIds, CallSettings, EndReason, MarkId, Outbound};
pub use call_supervisor::{CallArgs, CallHandle, SupervisorMsg, start_call};
pub use policy_file::{PolicyError, PolicyFile};
pub use providers::{Keys, Notice, Providers};
