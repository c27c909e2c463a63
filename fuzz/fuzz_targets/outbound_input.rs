//! What an outbound request and a do-not-call import bring from outside:
//! any text as a phone number (E.164 or national), any file as an import,
//! any audio to the beep detector — a number, an error or nothing, never a
//! panic.
#![no_main]

use hark_actors::beep::BeepDetector;
use hark_actors::ulaw::{FRAME_SAMPLES, decode_into};
use hark_runtime::cli::import_rows;
use hark_runtime::outbound::phone::e164;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for (_, number) in import_rows(text) {
            if let Ok(n) = e164(&number, "IN".parse().ok()) {
                assert!(n.starts_with('+'));
                assert_eq!(e164(&n, None).as_deref(), Ok(n.as_str()));
            }
        }
    }
    let mut beeps = BeepDetector::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    for frame in data.chunks_exact(FRAME_SAMPLES) {
        decode_into(frame, &mut pcm);
        if let Some(b) = beeps.push(&pcm) {
            assert!((300.0..=2000.0).contains(&b.hz) && b.ms >= 140);
        }
    }
});
