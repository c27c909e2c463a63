//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + each POST
//! parameter's name and value, sorted by name)). On the WebSocket upgrade of
//! a stream the URL is the `wss://` URL and there are no parameters. No I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The signature Twilio sends for `url` and form `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(signed(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this request (constant-time compare).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    match STANDARD.decode(signature.trim()) {
        Ok(given) => signed(auth_token, url, params).verify_slice(&given).is_ok(),
        Err(_) => false,
    }
}

fn signed(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes()) else {
        unreachable!("HMAC accepts any key length")
    };
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Stable: repeated names keep their order, as Twilio's libraries do.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's documented example (twilio-php RequestValidator docs).
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    fn example() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn twilios_documented_example() {
        assert_eq!(sign("12345", URL, &example()), SIGNATURE);
        assert!(verify("12345", URL, &example(), SIGNATURE));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut p = example();
        p.reverse();
        assert!(verify("12345", URL, &p, SIGNATURE));
    }

    #[test]
    fn tampering_with_url_body_header_or_token_fails() {
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &example(),
            SIGNATURE
        ));
        assert!(!verify(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &example(),
            SIGNATURE
        ));
        let mut body = example();
        body[2].1 = "9999".into();
        assert!(!verify("12345", URL, &body, SIGNATURE));
        let mut extra = example();
        extra.push(("Extra".into(), "1".into()));
        assert!(!verify("12345", URL, &extra, SIGNATURE));
        assert!(!verify(
            "12345",
            URL,
            &example(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B9="
        ));
        assert!(!verify("12345", URL, &example(), "not base64!"));
        assert!(!verify("12345", URL, &example(), ""));
        assert!(!verify("54321", URL, &example(), SIGNATURE));
    }

    #[test]
    fn a_websocket_upgrade_signs_the_url_alone() {
        let url = "wss://hark.example.net/twilio/media";
        let sig = sign("tok", url, &[]);
        assert!(verify("tok", url, &[], &sig));
        assert!(!verify(
            "tok",
            "wss://evil.example.net/twilio/media",
            &[],
            &sig
        ));
    }
}
