//! Reading a recording takes outside input — a client's `Range` header —
//! and bytes from storage, which may be damaged: either must give an answer
//! or an error, never a panic, and a range granted lies within the body.
#![no_main]

use base64::Engine;
use hark_runtime::api::recordings::parse_range;
use hark_runtime::pii::Pii;
use hark_runtime::recordings::sealed::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for len in [0u64, 1, 10, 70_000, u64::MAX] {
            if let Some(Ok(r)) = parse_range(text, len) {
                assert!(r.start < r.end && r.end <= len, "{text:?} {len} {r:?}");
            }
        }
    }
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let Ok(pii) = Pii::from_spec(&format!("k1:{key}"), &key) else {
        return;
    };
    if let Ok(header) = Header::parse(data) {
        let Ok(len) = header.plain_len(data.len() as u64) else {
            return;
        };
        if len == 0 {
            return;
        }
        let range = 0..len;
        let (chunks, bytes) = header.span(&range, len);
        if let Some(sealed) = data.get(bytes.start as usize..bytes.end as usize) {
            let _ = header.open(&pii, chunks, sealed, &range, len);
        }
    }
});
