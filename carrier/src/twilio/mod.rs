//! Twilio: Media Streams (messages and the stream codec), TwiML, request
//! signatures, call ids and call statuses. Pure codecs, no I/O.

pub mod ids;
pub mod messages;
pub mod signature;
pub mod status;
pub mod stream;
pub mod twiml;

pub use messages::{BadMessage, HarkMessage, StrNum, TwilioEvent};
pub use stream::TwilioStream;
