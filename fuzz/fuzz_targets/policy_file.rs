//! Policy files come from people: any text must give a policy or an error, never a panic.
#![no_main]

use hark_actors::PolicyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = PolicyFile::parse(text, "fuzz", "fuzz") {
            assert!(policy.validate().is_empty());
        }
    }
});
