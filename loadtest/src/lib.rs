//! Simulated Twilio callers speaking real audio: the engine of Hark's
//! end-to-end tests and of the `hark-loadtest` harness.

pub mod caller;
pub mod fixtures;

pub use caller::{Caller, CallerError, CallerOptions, CallerState, Event, SpeechWindow};
