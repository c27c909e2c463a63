//! What decides whether a stream may become a call is outside input: the
//! stream token a `start` carries and the `X-Forwarded-For` a request
//! carries must give a verdict, never a panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use hark_runtime::http_limits::{ConnLimits, HttpSettings};
use hark_runtime::stream_token::TokenKey;
use libfuzzer_sys::fuzz_target;

fn limits() -> &'static Arc<ConnLimits> {
    static LIMITS: OnceLock<Arc<ConnLimits>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        ConnLimits::new(&HttpSettings {
            trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
            ..HttpSettings::default()
        })
        .expect("fuzz settings")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = TokenKey::new(vec![7u8; 32]).expect("fuzz key");
    let _ = key.verify(text, "CA1", 1_700_000_000);
    if let Ok(value) = text.parse() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", value);
        let proxy = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let _ = limits().client_addr(proxy, &headers);
    }
});
