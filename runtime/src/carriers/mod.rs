//! Carriers: what connects a phone call to Hark. The carrier-neutral
//! stream session ([`stream`]) runs any carrier's media stream through its
//! [`hark_carrier::port::StreamCodec`]; each carrier's folder holds what is
//! its own on the HTTP side (webhooks, the stream upgrade, its REST client).
//!
//! # Layout
//! - [`stream`] — one media stream: the carrier's events into the call, the
//!   call's commands out; stream tokens, claims, limits, timeouts.
//! - [`twilio`] — Twilio's voice and status webhooks and the stream upgrade
//!   (`webhook.rs`), its REST client as `CallControl` (`rest.rs`). Its wire
//!   codecs are in the `hark-carrier` crate (`hark_carrier::twilio`).

pub mod stream;
pub mod twilio;

/// `hark_calls_rejected_total{reason}`: calls refused before they started.
pub const CALLS_REJECTED: &str = "hark_calls_rejected_total";

/// `hark_twilio_signature_failures_total`: webhook requests whose signature
/// did not verify.
pub const SIGNATURE_FAILURES: &str = "hark_twilio_signature_failures_total";
