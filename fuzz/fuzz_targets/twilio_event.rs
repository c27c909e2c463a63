//! Twilio's messages are outside input: parsing must never panic, and
//! whatever parses must serialize and parse back to the same message.
#![no_main]

use hark_runtime::twilio::{HarkMessage, TwilioEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = TwilioEvent::parse(text) {
        let json = event.to_json();
        assert_eq!(TwilioEvent::parse(&json).ok(), Some(event));
    }
    let _ = HarkMessage::parse(text);
});
