//! Carriers' wire formats, as pure codecs: no I/O, no runtime, so the
//! server and the load generator share them without sharing a server.
//!
//! # Layout
//!
//! - [`twilio`] — Twilio Media Streams messages (`messages.rs`), TwiML
//!   (`twiml.rs`) and request signatures (`signature.rs`).

pub mod twilio;
