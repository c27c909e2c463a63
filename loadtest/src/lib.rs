//! Simulated Twilio callers speaking real audio: the engine of Hark's
//! end-to-end tests and of the `hark-loadtest` harness.

pub mod caller;
pub mod fixtures;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod threshold;

pub use caller::{Caller, CallerError, CallerOptions, CallerState, Condition, Event, SpeechWindow};
