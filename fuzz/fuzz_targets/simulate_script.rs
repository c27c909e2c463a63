//! Simulation scripts come from people: any text gives steps or an error
//! naming a line of it, never a panic.
#![no_main]

use hark_actors::simulate::script;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = script::parse(text) {
            assert!(e.line >= 1 && e.line <= text.lines().count());
        }
    }
});
