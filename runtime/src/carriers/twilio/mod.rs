//! Twilio: the voice and status webhooks, the Media Streams upgrade, and the
//! REST client (call control). The wire codecs (messages, stream codec,
//! TwiML, signatures, ids) are `hark_carrier::twilio`.

pub mod rest;
pub mod webhook;

pub use webhook::{STATUS_EVENT_BASE, caller_identity, media, status, voice};
