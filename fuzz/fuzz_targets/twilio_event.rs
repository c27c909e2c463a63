//! Twilio's messages are outside input: parsing must never panic, whatever
//! parses must serialize and parse back to the same message, and the
//! stream codec (before and after a start) must never panic either.
#![no_main]

use hark_runtime::twilio::{HarkMessage, TwilioEvent, TwilioStream};
use hark_carrier::port::{Frame, StreamCodec};
use libfuzzer_sys::fuzz_target;

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

fuzz_target!(|data: &[u8]| {
    let mut fresh = TwilioStream::new();
    let _ = fresh.decode(Frame::Binary(data));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = TwilioEvent::parse(text) {
        let json = event.to_json();
        assert_eq!(TwilioEvent::parse(&json).ok(), Some(event));
    }
    let _ = HarkMessage::parse(text);
    let _ = fresh.decode(Frame::Text(text));
    let mut started = TwilioStream::new();
    let _ = started.decode(Frame::Text(START));
    let _ = started.decode(Frame::Text(text));
});
