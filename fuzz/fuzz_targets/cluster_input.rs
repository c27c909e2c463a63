//! What reaches a node from the cluster's side: any `X-Hark-Forward` header
//! (verified against any path and form), any TwiML a webhook could answer
//! (the load generator reads it), any URL path — a yes/no or a value, never
//! a panic; and a header this node signed always verifies.
#![no_main]

use hark_runtime::cluster::forward::{path_of, sign, verify};
use hark_runtime::stream_token::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = TokenKey::new(vec![7u8; 32]) else {
        return;
    };
    let (header, rest) = text.split_once('\n').unwrap_or((text, ""));
    let params: Vec<(String, String)> = rest
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let path = path_of(rest);
    let _ = verify(&key, 1_000, header, path, &params);
    let signed = sign(&key, 1_000, path, &params);
    assert!(verify(&key, 1_000, &signed, path, &params));
    let _ = hark_loadtest::webhook::parse(text);
    let _ = hark_loadtest::webhook::node_of(text);
});
