//! Stream tokens bind a Media Stream to the webhook that admitted its call.
//!
//! The WebSocket upgrade's `X-Twilio-Signature` covers a fixed URL, so on its
//! own one captured header opens streams forever, and whatever `callSid`,
//! `from` or `to` a `start` message claims would be believed. Instead the
//! voice webhook — signed by Twilio over the call's own parameters, and the
//! place where the blocklist and caller limits run — mints a short-lived
//! token naming the call (SID, numbers, direction, policy and its version,
//! expiry), and hands it to Twilio as a `<Parameter>`. Twilio returns it in
//! `start.customParameters`; the stream is accepted only with a valid token
//! for the same call SID, and the call's numbers come from the token.
//!
//! Format: `v1.` base64url(JSON claims) `.` base64url(HMAC-SHA256(key,
//! `hark-stream/v1.` + the encoded claims)). No I/O here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The environment variable holding the stream token key (a secret: never
/// a config file). Required with PostgreSQL, where nodes verify each other's
/// tokens; a single SQLite node keeps a generated key in its data directory.
pub const STREAM_TOKEN_KEY_ENV: &str = "HARK_STREAM_TOKEN_KEY";

/// The stream parameter that carries the token.
pub const PARAM: &str = "hark_token";
/// Shortest key accepted: 256 bits.
pub const MIN_KEY_BYTES: usize = 32;
/// Longer tokens are refused before any decoding.
const MAX_TOKEN_CHARS: usize = 4096;
const DOMAIN: &[u8] = b"hark-stream/v1.";

/// What the webhook vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamClaims {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub direction: String,
    pub policy: String,
    pub policy_version: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// A call Hark placed: its placement's id (the lead's variables are
    /// looked up by it, never carried through the carrier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<String>,
    /// A call taken over from a lost node: its new stream index (records go
    /// on after the old ones; the history is read back from them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the stream has no {PARAM} parameter")]
    Missing,
    #[error("the stream token is malformed")]
    Malformed,
    #[error("the stream token's signature does not match")]
    Signature,
    #[error("the stream token expired {0} s ago")]
    Expired(u64),
    #[error("the stream token is for another call")]
    WrongCall,
}

impl TokenError {
    /// A bounded label for logs and the close reason.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::Signature => "token_signature",
            TokenError::Expired(_) => "token_expired",
            TokenError::WrongCall => "token_wrong_call",
        }
    }
}

/// The secret every node of a deployment shares.
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

impl TokenKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "must be at least {MIN_KEY_BYTES} bytes, not {} (e.g. `openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts any key length")
        };
        mac.update(DOMAIN);
        mac.update(payload.as_bytes());
        mac
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed) under `domain`: the
    /// key's other uses (forwarded requests between nodes) never collide
    /// with a stream token.
    pub fn tag(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts any key length")
        };
        mac.update(domain);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    pub fn sign(&self, claims: &StreamClaims) -> String {
        // Serializing plain strings and a number cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("v1.{payload}.{tag}")
    }

    /// The claims of `token` if it is ours, unexpired at `now_secs`, and for
    /// `call_sid`.
    pub fn verify(
        &self,
        token: &str,
        call_sid: &str,
        now_secs: u64,
    ) -> Result<StreamClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Signature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: StreamClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if now_secs > claims.exp {
            return Err(TokenError::Expired(now_secs - claims.exp));
        }
        if claims.call_sid != call_sid {
            return Err(TokenError::WrongCall);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The stream token key: `HARK_STREAM_TOKEN_KEY`, else (one SQLite node) a
/// key kept in the data directory, made on first start.
pub fn key_for(
    data_dir: &std::path::Path,
    shared_database: bool,
) -> Result<(TokenKey, &'static str), String> {
    if let Ok(value) = std::env::var(STREAM_TOKEN_KEY_ENV) {
        let key =
            TokenKey::new(value.into_bytes()).map_err(|e| format!("{STREAM_TOKEN_KEY_ENV} {e}"))?;
        return Ok((key, "from HARK_STREAM_TOKEN_KEY"));
    }
    if shared_database {
        return Err(format!(
            "{STREAM_TOKEN_KEY_ENV} is required with PostgreSQL: every node must verify the stream tokens the others hand out. Set the same value (32 bytes or more, e.g. `openssl rand -base64 32`) on every node"
        ));
    }
    let file = data_dir.join("stream-token.key");
    let (key, created) =
        crate::pii::key_file(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let key = TokenKey::new(key).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((
        key,
        if created {
            "generated (data dir; set HARK_STREAM_TOKEN_KEY for several nodes)"
        } else {
            "from the data dir (set HARK_STREAM_TOKEN_KEY for several nodes)"
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::new(vec![b; 32]).unwrap()
    }

    fn claims() -> StreamClaims {
        StreamClaims {
            call_sid: "CA1".into(),
            from: "+15551230000".into(),
            to: "+15557650000".into(),
            direction: "inbound".into(),
            policy: "default".into(),
            policy_version: "1".into(),
            exp: 1_000,
            outbound: None,
            resume: None,
        }
    }

    #[test]
    fn a_token_verifies_for_its_call_until_it_expires() {
        let k = key(1);
        let t = k.sign(&claims());
        assert!(t.starts_with("v1.") && !t.contains(['+', '/', '=']));
        assert_eq!(k.verify(&t, "CA1", 999).unwrap(), claims());
        assert_eq!(k.verify(&t, "CA1", 1_000).unwrap(), claims());
        assert_eq!(k.verify(&t, "CA1", 1_030), Err(TokenError::Expired(30)));
        assert_eq!(k.verify(&t, "CA2", 999), Err(TokenError::WrongCall));
    }

    #[test]
    fn another_key_or_a_changed_claim_fails_the_signature() {
        let t = key(1).sign(&claims());
        assert_eq!(key(2).verify(&t, "CA1", 0), Err(TokenError::Signature));
        // Swap in the claims of another call, keeping the tag.
        let mut other = claims();
        other.from = "+15559999999".into();
        let forged = key(2).sign(&other);
        let (_, tag) = t.rsplit_once('.').unwrap();
        let (head, _) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            key(1).verify(&format!("{head}.{tag}"), "CA1", 0),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_panic() {
        let k = key(1);
        let good = k.sign(&claims());
        for bad in [
            "v1",
            "v1..",
            "v2.abc.def",
            "v1.abc",
            "v1.a.b.c",
            "v1.%%%.AAAA",
            &"v1.".repeat(2000),
            "v1.eyJ9.AAAA",
        ] {
            let e = k.verify(bad, "CA1", 0).unwrap_err();
            assert!(
                matches!(e, TokenError::Malformed | TokenError::Signature),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(k.verify("", "CA1", 0), Err(TokenError::Missing));
        // Signed but not our claims (the key holder made a bad payload).
        let payload = URL_SAFE_NO_PAD.encode(b"{\"call_sid\":1}");
        let tag = URL_SAFE_NO_PAD.encode(k.mac(&payload).finalize().into_bytes());
        assert_eq!(
            k.verify(&format!("v1.{payload}.{tag}"), "CA1", 0),
            Err(TokenError::Malformed)
        );
        assert!(k.verify(&good, "CA1", 0).is_ok());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenKey::new(vec![0; 31]).is_err());
        assert!(TokenKey::new(vec![0; 32]).is_ok());
        assert_eq!(format!("{:?}", key(1)), "TokenKey(<secret>)");
    }
}
