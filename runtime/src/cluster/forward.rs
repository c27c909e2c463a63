//! Requests for a call that reach a node other than the call's: forwarded
//! over HTTP to the node that holds it (its advertised URL, from the
//! registry), signed with the deployment's shared key.
//!
//! HTTP rather than Redis pub/sub: the answer (TwiML, a status code) comes
//! back to the carrier that asked, a lost node fails the request at once
//! instead of leaving a message nobody reads, and Redis stays out of the
//! call's path. The origin has checked the carrier's signature; the target
//! checks `X-Hark-Forward`: `t.` base64url(HMAC-SHA256(key,
//! `hark-forward/v1` ‖ t ‖ path and query ‖ each param name and value,
//! sorted))`, within [`MAX_SKEW_SECS`] of its clock.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::stream_token::TokenKey;

pub const HEADER: &str = "x-hark-forward";
/// A forwarded request older (or newer) than this is refused.
pub const MAX_SKEW_SECS: u64 = 30;
/// Longest a forward waits for the other node.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// `hark_cluster_forwards_total{result}`: `ok`, `failed` (unreachable or refused: handled here instead).
pub const FORWARDS: &str = "hark_cluster_forwards_total";
const DOMAIN: &[u8] = b"hark-forward/v1";

fn tag(key: &TokenKey, t: u64, path: &str, params: &[(String, String)]) -> String {
    let t = t.to_string();
    let mut parts: Vec<&[u8]> = vec![t.as_bytes(), path.as_bytes()];
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        parts.push(k.as_bytes());
        parts.push(v.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(key.tag(DOMAIN, &parts))
}

/// The header value for a request to `path` (path and query) with `params`.
pub fn sign(key: &TokenKey, now: u64, path: &str, params: &[(String, String)]) -> String {
    format!("{now}.{}", tag(key, now, path, params))
}

/// Whether `header` vouches for this request.
pub fn verify(
    key: &TokenKey,
    now: u64,
    header: &str,
    path: &str,
    params: &[(String, String)],
) -> bool {
    let Some((t, given)) = header.split_once('.') else {
        return false;
    };
    let Ok(t) = t.parse::<u64>() else {
        return false;
    };
    if t.abs_diff(now) > MAX_SKEW_SECS {
        return false;
    }
    // Constant time: compare the tags as MACs would.
    let want = tag(key, t, path, params);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The path and query of a full URL (`scheme://host/path?q` → `/path?q`).
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// POSTs the form to `base` + `path` on the other node; its status, content
/// type and body, or `None` when it did not take the request (unreachable,
/// or refused it: a key that differs, say) — the caller handles it then,
/// so nothing is lost to a misconfigured peer.
pub async fn post_form(
    http: &reqwest::Client,
    key: &TokenKey,
    base: &str,
    path: &str,
    params: &[(String, String)],
) -> Option<(u16, String, String)> {
    let url = format!("{base}{path}");
    // Signed over the path as the other node sees it (its own prefix included).
    let header = sign(key, crate::stream_token::now_secs(), path_of(&url), params);
    let sent = http
        .post(&url)
        .header(HEADER, header)
        .form(params)
        .timeout(FORWARD_TIMEOUT)
        .send()
        .await;
    let result = match sent {
        Ok(res) if res.status().is_success() => {
            let status = res.status().as_u16();
            let kind = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_owned();
            res.text().await.ok().map(|body| (status, kind, body))
        }
        _ => None,
    };
    let label = if result.is_some() { "ok" } else { "failed" };
    metrics::counter!(FORWARDS, "result" => label).increment(1);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(vec![7; 32]).unwrap()
    }

    fn params() -> Vec<(String, String)> {
        vec![
            ("CallStatus".into(), "completed".into()),
            ("CallSid".into(), "CA1".into()),
        ]
    }

    #[test]
    fn a_signed_forward_verifies_and_any_change_does_not() {
        let h = sign(&key(), 1_000, "/twilio/status?x=1", &params());
        assert!(verify(&key(), 1_010, &h, "/twilio/status?x=1", &params()));
        // Order of the form does not matter; content does.
        let mut reversed = params();
        reversed.reverse();
        assert!(verify(&key(), 1_000, &h, "/twilio/status?x=1", &reversed));
        assert!(!verify(&key(), 1_000, &h, "/twilio/status?x=2", &params()));
        let mut other = params();
        other[0].1 = "ringing".into();
        assert!(!verify(&key(), 1_000, &h, "/twilio/status?x=1", &other));
        assert!(!verify(&key(), 1_031, &h, "/twilio/status?x=1", &params()));
        let wrong = TokenKey::new(vec![8; 32]).unwrap();
        assert!(!verify(&wrong, 1_000, &h, "/twilio/status?x=1", &params()));
        for bad in ["", "1000", "x.y", "1000.", "1000.AAAA"] {
            assert!(!verify(&key(), 1_000, bad, "/twilio/status?x=1", &params()));
        }
    }

    #[test]
    fn path_of_a_url() {
        assert_eq!(
            path_of("https://h:1/twilio/status?a=b"),
            "/twilio/status?a=b"
        );
        assert_eq!(path_of("http://h"), "/");
        assert_eq!(path_of("/x"), "/x");
    }
}
