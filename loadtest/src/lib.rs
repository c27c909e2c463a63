//! Simulated Twilio callers speaking real audio: the engine of Hark's
//! end-to-end tests and of the `hark-loadtest` harness.
//!
//! # Layout
//!
//! - [`caller`] — one simulated caller: its script, the Twilio socket (marks
//!   echoed like Twilio's player), and what it measures (latency, stale
//!   frames, barge-ins).
//! - [`scenario`] — what callers say and when; [`fixtures`] — the speech.
//! - [`webhook`] — calls that start at the voice webhook (signed), then
//!   stream where its TwiML says: a cluster's placement and spread.
//! - [`run`] — many callers on thread-per-core workers, stages (k6-style);
//!   [`server`] — the server's CPU and RSS from `/proc`, its `/metrics`.
//! - [`stats`] — HDR histograms; [`threshold`] — pass/fail rules;
//!   [`report`] — the table and JSON; [`plot`] — the SVG/PNG.

pub mod caller;
pub mod fixtures;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod threshold;
pub mod webhook;

pub use caller::{Caller, CallerError, CallerOptions, CallerState, Condition, Event, SpeechWindow};
