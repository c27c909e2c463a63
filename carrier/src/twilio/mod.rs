//! Twilio's side of a call: Media Streams messages and TwiML. Pure codecs, no I/O.

pub mod messages;
pub mod signature;
pub mod twiml;

pub use messages::{BadMessage, HarkMessage, StrNum, TwilioEvent};
