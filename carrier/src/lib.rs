//! The carrier port and the carriers behind it.
//!
//! The call core speaks [`port`] only: neutral media events and commands,
//! each stream's capabilities, and call control answering `Unsupported`
//! where a carrier lacks an operation. Each carrier is one folder with its
//! wire format as pure codecs (no I/O, no runtime), so the server and the
//! load generator share them without sharing a server.
//!
//! # Layout
//!
//! - [`port`] — `Event`, `Command`, `Checkpoint`, `Capabilities`,
//!   `CallStatus`, the `CallControl` trait.
//! - [`twilio`] — Twilio Media Streams messages (`messages.rs`), TwiML
//!   (`twiml.rs`), request signatures (`signature.rs`), call ids (`ids.rs`).

pub mod port;
pub mod twilio;
