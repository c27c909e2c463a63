//! Personal data at rest: transcript text and phone numbers are encrypted
//! with AES-256-GCM; phone numbers are also kept as a keyed hash (HMAC-SHA256)
//! so the blocklist and dedupe can find them without decrypting.
//!
//! Each ciphertext names its key: `[id length][key id][12-byte nonce][ciphertext + tag]`,
//! so keys rotate by adding a new active key and keeping the old ones for
//! reading. Keys come from `HARK_PII_KEYS` (`id:base64key,…`, the first one
//! active) or the `pii.keys_file`; for local development a key file is made in
//! the data directory on first start, and Hark says so.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("PII keys: {0}")]
    Keys(String),
    #[error("cannot decrypt: {0}")]
    Decrypt(&'static str),
}

pub struct Pii {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
    hash_key: Vec<u8>,
    /// `(key id, fingerprint)` of every key, the hash key as `#hash`.
    fingerprints: Vec<(String, String)>,
}

/// A key's fingerprint: names it without revealing it (SHA-256 of a
/// domain tag and the key, 32 hex digits).
fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::new()
        .chain_update(b"hark-pii-key-fingerprint/v1:")
        .chain_update(key)
        .finalize();
    hex(&digest[..16])
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pii").field("active", &self.active).finish()
    }
}

impl Pii {
    /// Parses `id:base64key,…` (first active) and the hash key (base64).
    pub fn from_spec(keys: &str, hash_key: &str) -> Result<Self, PiiError> {
        let mut map = HashMap::new();
        let mut active = None;
        let mut fingerprints = Vec::new();
        for part in keys.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part
                .split_once(':')
                .ok_or_else(|| PiiError::Keys(format!("{:?} is not id:base64key", redact(part))))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(PiiError::Keys(format!(
                    "key id {id:?}: 1-32 letters, digits, '-', '_'"
                )));
            }
            let key = STANDARD
                .decode(b64)
                .map_err(|_| PiiError::Keys(format!("key {id:?} is not base64")))?;
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| {
                PiiError::Keys(format!("key {id:?} must be 32 bytes, not {}", key.len()))
            })?;
            active.get_or_insert_with(|| id.to_owned());
            if map.insert(id.to_owned(), cipher).is_some() {
                return Err(PiiError::Keys(format!(
                    "key id {id:?} is given twice: each key needs its own id"
                )));
            }
            fingerprints.push((id.to_owned(), fingerprint(&key)));
        }
        let active = active.ok_or_else(|| PiiError::Keys("no key given".into()))?;
        let hash_key = STANDARD
            .decode(hash_key.trim())
            .map_err(|_| PiiError::Keys("hash key is not base64".into()))?;
        if hash_key.len() < 16 {
            return Err(PiiError::Keys("hash key must be at least 16 bytes".into()));
        }
        fingerprints.push(("#hash".to_owned(), fingerprint(&hash_key)));
        Ok(Self {
            active,
            keys: map,
            hash_key,
            fingerprints,
        })
    }

    /// Every key's id and fingerprint (the hash key as `#hash`), for the
    /// database to tell whether this node writes what the others can read.
    pub fn fingerprints(&self) -> &[(String, String)] {
        &self.fingerprints
    }

    /// Reads `file` (`keys = …`, `hash_key = …` lines), creating it with
    /// fresh random keys (mode 0600) when it does not exist. Returns whether
    /// it was created.
    pub fn from_file_or_create(file: &Path) -> Result<(Self, bool), PiiError> {
        let created = if file.exists() {
            false
        } else {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| PiiError::Keys(format!("{}: {e}", dir.display())))?;
            }
            let text = format!(
                "# Hark PII keys. Keep this file secret and backed up: without it stored\n# transcripts and phone numbers cannot be read.\nkeys = k1:{}\nhash_key = {}\n",
                STANDARD.encode(random::<32>()),
                STANDARD.encode(random::<32>())
            );
            write_private(file, &text)
                .map_err(|e| PiiError::Keys(format!("{}: {e}", file.display())))?;
            true
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| PiiError::Keys(format!("{}: {e}", file.display())))?;
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
                .ok_or_else(|| PiiError::Keys(format!("{}: no `{name} = …` line", file.display())))
        };
        Ok((
            Self::from_spec(&field("keys")?, &field("hash_key")?)?,
            created,
        ))
    }

    /// The cipher of key `id` (recordings seal their chunks with it).
    pub fn cipher(&self, id: &str) -> Option<&Aes256Gcm> {
        self.keys.get(id)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn encrypt(&self, plain: &str) -> Vec<u8> {
        let nonce = random::<12>();
        let cipher = &self.keys[&self.active];
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), plain.as_bytes())
            .unwrap_or_default();
        let id = self.active.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + 12 + sealed.len());
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, blob: &[u8]) -> Result<String, PiiError> {
        let (&n, rest) = blob.split_first().ok_or(PiiError::Decrypt("empty"))?;
        let n = n as usize;
        if rest.len() < n + 12 + 16 {
            return Err(PiiError::Decrypt("too short"));
        }
        let id = std::str::from_utf8(&rest[..n]).map_err(|_| PiiError::Decrypt("bad key id"))?;
        let cipher = self
            .keys
            .get(id)
            .ok_or(PiiError::Decrypt("unknown key id"))?;
        let nonce =
            Nonce::try_from(&rest[n..n + 12]).map_err(|_| PiiError::Decrypt("bad nonce"))?;
        let plain = cipher
            .decrypt(&nonce, &rest[n + 12..])
            .map_err(|_| PiiError::Decrypt("authentication failed"))?;
        String::from_utf8(plain).map_err(|_| PiiError::Decrypt("not UTF-8"))
    }

    /// The keyed hash of an outcome slot's value, for filters: `h:` and 16
    /// hex digits of HMAC-SHA256(slot, NUL, the value as JSON).
    pub fn hash_slot(&self, slot: &str, value: &serde_json::Value) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.hash_key) else {
            unreachable!("HMAC accepts any key length")
        };
        mac.update(b"slot:");
        mac.update(slot.as_bytes());
        mac.update(&[0]);
        mac.update(value.to_string().as_bytes());
        let full = hex(&mac.finalize().into_bytes());
        format!("h:{}", full.get(..16).unwrap_or(&full))
    }

    /// A short keyed hash of a phone number for audit rows: identifies the
    /// number to someone who has it, reveals nothing to anyone who has not.
    pub fn audit_ref(&self, number: &str) -> String {
        let full = self.hash_number(number);
        format!("h:{}", full.get(..16).unwrap_or(&full))
    }

    /// The keyed hash of a phone number (normalized to `+` and digits).
    pub fn hash_number(&self, number: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.hash_key) else {
            unreachable!("HMAC accepts any key length")
        };
        mac.update(normalize(number).as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

/// `+15551234567` from `+1 (555) 123-4567`.
pub fn normalize(number: &str) -> String {
    number
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
}

/// A number as logs may show it: country code and last two digits.
pub fn mask(number: &str) -> String {
    let n = normalize(number);
    if n.len() <= 4 {
        return "*".repeat(n.len());
    }
    let head = if n.starts_with('+') { 2 } else { 0 };
    format!(
        "{}{}{}",
        &n[..head],
        "*".repeat(n.len() - head - 2),
        &n[n.len() - 2..]
    )
}

/// The node's keys: `HARK_PII_KEYS` and `HARK_PII_HASH_KEY` when set, else
/// `DATA_DIR/pii.keys` (made on first start, said loudly).
pub fn load(config: &crate::Config) -> Result<Pii, PiiError> {
    match (
        std::env::var("HARK_PII_KEYS"),
        std::env::var("HARK_PII_HASH_KEY"),
    ) {
        (Ok(keys), Ok(hash)) => Pii::from_spec(&keys, &hash),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => Err(PiiError::Keys(
            "set both HARK_PII_KEYS and HARK_PII_HASH_KEY, or neither".into(),
        )),
        (Err(_), Err(_)) if config.is_shared_database() => Err(PiiError::Keys(
            "HARK_PII_KEYS and HARK_PII_HASH_KEY are required with PostgreSQL: every node must encrypt and hash with the same keys, or one cannot read another's rows nor enforce its blocks. Set them from your secret store (each key: 32 random bytes, base64), the same on every node".into(),
        )),
        (Err(_), Err(_)) => {
            let file = config.data_dir.join("pii.keys");
            let (pii, created) = Pii::from_file_or_create(&file)?;
            if created {
                tracing::warn!(file = %file.display(), "created PII encryption keys for this node; back the file up (without it stored transcripts and numbers cannot be read), or set HARK_PII_KEYS and HARK_PII_HASH_KEY");
            }
            Ok(pii)
        }
    }
}

/// A node-local secret in `file` (base64 of 32 random bytes, mode 0600),
/// made on first use; the key's bytes and whether it was just made.
pub fn key_file(file: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let created = !file.exists();
    if created {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_private(file, &format!("{}\n", STANDARD.encode(random::<32>())))?;
    }
    let text = std::fs::read_to_string(file)?;
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not base64"))?;
    Ok((key, created))
}

fn redact(s: &str) -> String {
    s.split_once(':')
        .map_or_else(|| "…".into(), |(id, _)| format!("{id}:…"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out);
    out
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        STANDARD.encode([7u8; 32])
    }

    #[test]
    fn round_trip_and_rotation() {
        let hash = STANDARD.encode([9u8; 32]);
        let old = Pii::from_spec(&format!("k1:{}", key()), &hash).unwrap();
        let blob = old.encrypt("+15551234567");
        assert_ne!(blob, b"+15551234567");
        assert_eq!(old.decrypt(&blob).unwrap(), "+15551234567");
        // A new active key still reads what the old one wrote.
        let new_key = STANDARD.encode([8u8; 32]);
        let rotated = Pii::from_spec(&format!("k2:{new_key},k1:{}", key()), &hash).unwrap();
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(rotated.decrypt(&blob).unwrap(), "+15551234567");
        assert_eq!(rotated.decrypt(&rotated.encrypt("hi")).unwrap(), "hi");
        // Without the old key it cannot.
        let only_new = Pii::from_spec(&format!("k2:{new_key}"), &hash).unwrap();
        assert!(only_new.decrypt(&blob).is_err());
    }

    #[test]
    fn tampering_is_detected_and_nonces_differ() {
        let p = Pii::from_spec(&format!("k1:{}", key()), &STANDARD.encode([1u8; 16])).unwrap();
        let a = p.encrypt("same");
        let b = p.encrypt("same");
        assert_ne!(a, b);
        let mut t = a.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(p.decrypt(&t).is_err());
        assert!(p.decrypt(&[]).is_err());
        assert!(p.decrypt(&[200, 1, 2]).is_err());
    }

    #[test]
    fn hashes_are_keyed_and_normalized() {
        let p = Pii::from_spec(&format!("k1:{}", key()), &STANDARD.encode([1u8; 16])).unwrap();
        let q = Pii::from_spec(&format!("k1:{}", key()), &STANDARD.encode([2u8; 16])).unwrap();
        assert_eq!(
            p.hash_number("+1 (555) 123-4567"),
            p.hash_number("+15551234567")
        );
        assert_ne!(p.hash_number("+15551234567"), q.hash_number("+15551234567"));
        assert_eq!(mask("+15551234567"), "+1********67");
    }

    #[test]
    fn a_key_id_given_twice_is_refused() {
        let h = STANDARD.encode([1u8; 16]);
        let e = Pii::from_spec(
            &format!("k1:{},k1:{}", key(), STANDARD.encode([3u8; 32])),
            &h,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn fingerprints_name_keys_without_revealing_them() {
        let h = STANDARD.encode([1u8; 16]);
        let p = Pii::from_spec(&format!("k1:{}", key()), &h).unwrap();
        let q = Pii::from_spec(&format!("k1:{}", STANDARD.encode([8u8; 32])), &h).unwrap();
        assert_eq!(p.fingerprints()[0].0, "k1");
        assert_eq!(p.fingerprints()[1].0, "#hash");
        assert_ne!(p.fingerprints()[0], q.fingerprints()[0]);
        assert_eq!(p.fingerprints()[1], q.fingerprints()[1]);
        assert!(!p.fingerprints()[0].1.contains(&key()));
    }

    #[test]
    fn bad_specs_name_the_problem_without_the_key() {
        let h = STANDARD.encode([1u8; 16]);
        for (spec, want) in [
            ("", "no key"),
            ("k1", "not id:base64key"),
            ("k1:!!!", "not base64"),
            ("k1:AAAA", "32 bytes"),
        ] {
            let e = Pii::from_spec(spec, &h).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}
