//! Recordings at rest: AES-256-GCM with the PII keys, in 64 KiB chunks, so
//! a `Range` request decrypts only the chunks it covers.
//!
//! ```text
//! "HRKSEAL1" | key id length (u8) | key id | nonce prefix (8) | chunk size (u32 BE)
//! chunk 0 | chunk 1 | … each: ciphertext of up to `chunk size` bytes + 16-byte tag
//! ```
//! Chunk `i`'s nonce is the object's random prefix and `i`; its associated
//! data is `i` and whether it is the last, so chunks cannot be reordered,
//! dropped or the object cut short without the tag failing. The key id is
//! in the header (and, on S3, the object's metadata): keys rotate as the
//! PII keys do.

use std::io::{Read, Write};
use std::ops::Range;

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};

use crate::pii::{Pii, random};

const MAGIC: &[u8; 8] = b"HRKSEAL1";
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("sealed recording: {0}")]
    Format(&'static str),
    #[error("no PII key {0:?} to open this recording")]
    NoKey(String),
    #[error("a chunk failed its integrity check")]
    Tampered,
}

/// A sealed object's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key_id: String,
    prefix: [u8; 8],
    chunk: usize,
    /// The header's length in bytes (where chunk 0 starts).
    pub len: u64,
}

fn aad(index: u64, last: bool) -> [u8; 17] {
    let mut a = [0u8; 17];
    a[..8].copy_from_slice(b"hark-rec");
    a[8..16].copy_from_slice(&index.to_be_bytes());
    a[16] = u8::from(last);
    a
}

fn nonce(prefix: &[u8; 8], index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&(index as u32).to_be_bytes());
    n
}

/// What sealing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    /// Bytes of the recording (what a reader gets).
    pub plain: u64,
    /// Bytes of the object.
    pub sealed: u64,
}

/// Encrypts `input` with the active PII key onto `output`.
pub fn seal(pii: &Pii, mut input: impl Read, mut output: impl Write) -> Result<Sealed, SealError> {
    let key_id = pii.active_key_id().to_owned();
    let cipher = pii
        .cipher(&key_id)
        .ok_or_else(|| SealError::NoKey(key_id.clone()))?;
    let prefix = random::<8>();
    let mut header = Vec::with_capacity(64);
    header.extend_from_slice(MAGIC);
    header.push(key_id.len() as u8);
    header.extend_from_slice(key_id.as_bytes());
    header.extend_from_slice(&prefix);
    header.extend_from_slice(&(CHUNK as u32).to_be_bytes());
    output.write_all(&header)?;
    let mut sealed = header.len() as u64;
    let mut plain = 0u64;
    // One chunk read ahead, so the last one is known as the last.
    let mut current = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut current_len = read_full(&mut input, &mut current)?;
    let mut index = 0u64;
    loop {
        let next_len = if current_len == CHUNK {
            read_full(&mut input, &mut next)?
        } else {
            0
        };
        let last = next_len == 0;
        let body = current.get(..current_len).unwrap_or_default();
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce(&prefix, index)),
                Payload {
                    msg: body,
                    aad: &aad(index, last),
                },
            )
            .map_err(|_| SealError::Format("encryption failed"))?;
        output.write_all(&ct)?;
        sealed += ct.len() as u64;
        plain += current_len as u64;
        if last {
            break;
        }
        std::mem::swap(&mut current, &mut next);
        current_len = next_len;
        index += 1;
    }
    output.flush()?;
    Ok(Sealed {
        key_id,
        plain,
        sealed,
    })
}

/// Fills `buf` as far as `input` goes (short only at its end); the count read.
pub(super) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The most a header can be (key ids are at most 32 bytes).
pub const MAX_HEADER: u64 = 8 + 1 + 32 + 8 + 4;

impl Header {
    /// Reads a header from the start of an object (at least its header's bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.get(..8) != Some(MAGIC) {
            return Err(SealError::Format("not a sealed recording"));
        }
        let id_len = *bytes.get(8).ok_or(SealError::Format("short header"))? as usize;
        let id = bytes
            .get(9..9 + id_len)
            .ok_or(SealError::Format("short header"))?;
        let key_id = std::str::from_utf8(id)
            .map_err(|_| SealError::Format("key id"))?
            .to_owned();
        let rest = bytes
            .get(9 + id_len..9 + id_len + 12)
            .ok_or(SealError::Format("short header"))?;
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&rest[..8]);
        let chunk = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        if chunk == 0 || chunk > 16 * 1024 * 1024 {
            return Err(SealError::Format("chunk size"));
        }
        Ok(Self {
            key_id,
            prefix,
            chunk,
            len: (9 + id_len + 12) as u64,
        })
    }

    /// The recording's length, from the object's.
    pub fn plain_len(&self, sealed_len: u64) -> Result<u64, SealError> {
        let body = sealed_len
            .checked_sub(self.len)
            .ok_or(SealError::Format("short object"))?;
        let whole = (self.chunk + TAG) as u64;
        let (full, rest) = (body / whole, body % whole);
        match rest {
            0 if full > 0 => Ok(full * self.chunk as u64),
            r if r >= TAG as u64 => Ok(full * self.chunk as u64 + r - TAG as u64),
            _ => Err(SealError::Format("object length")),
        }
    }

    /// The chunks holding plaintext `range` (non-empty, within `plain_len`)
    /// and the object bytes they take.
    pub fn span(&self, range: &Range<u64>, plain_len: u64) -> (Range<u64>, Range<u64>) {
        let chunk = self.chunk as u64;
        let first = range.start / chunk;
        let last = (range.end.saturating_sub(1)) / chunk;
        let whole = chunk + TAG as u64;
        let start = self.len + first * whole;
        let sealed_len = self.len + plain_len + plain_len.div_ceil(chunk).max(1) * TAG as u64;
        let end = (self.len + (last + 1) * whole).min(sealed_len);
        (first..last + 1, start..end)
    }

    /// Decrypts chunks `chunks` (as fetched by [`Header::span`]) and returns
    /// the bytes of plaintext `range` in them.
    pub fn open(
        &self,
        pii: &Pii,
        chunks: Range<u64>,
        sealed: &[u8],
        range: &Range<u64>,
        plain_len: u64,
    ) -> Result<Vec<u8>, SealError> {
        let cipher = pii
            .cipher(&self.key_id)
            .ok_or_else(|| SealError::NoKey(self.key_id.clone()))?;
        let total = plain_len.div_ceil(self.chunk as u64).max(1);
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (i, ct) in chunks.clone().zip(sealed.chunks(self.chunk + TAG)) {
            let plain = cipher
                .decrypt(
                    &Nonce::from(nonce(&self.prefix, i)),
                    Payload {
                        msg: ct,
                        aad: &aad(i, i + 1 == total),
                    },
                )
                .map_err(|_| SealError::Tampered)?;
            let base = i * self.chunk as u64;
            let from = range.start.saturating_sub(base) as usize;
            let to = (range.end - base).min(plain.len() as u64) as usize;
            out.extend_from_slice(plain.get(from..to).ok_or(SealError::Tampered)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pii() -> Pii {
        use base64::Engine;
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        Pii::from_spec(&format!("rec1:{k}"), &k).unwrap()
    }

    fn roundtrip(plain: &[u8], range: Range<u64>) -> Vec<u8> {
        let pii = pii();
        let mut sealed = Vec::new();
        let info = seal(&pii, plain, &mut sealed).unwrap();
        assert_eq!(info.sealed, sealed.len() as u64);
        let header = Header::parse(&sealed).unwrap();
        assert_eq!(header.key_id, "rec1");
        assert_eq!(
            header.plain_len(sealed.len() as u64).unwrap(),
            plain.len() as u64
        );
        let (chunks, bytes) = header.span(&range, plain.len() as u64);
        let part = &sealed[bytes.start as usize..bytes.end as usize];
        header
            .open(&pii, chunks, part, &range, plain.len() as u64)
            .unwrap()
    }

    #[test]
    fn any_range_decrypts_to_the_same_bytes() {
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for r in [
            0..1,
            0..200_000,
            65_535..65_537,
            131_072..131_073,
            199_999..200_000,
            10..150_000,
        ] {
            assert_eq!(
                roundtrip(&plain, r.clone()),
                plain[r.start as usize..r.end as usize]
            );
        }
        let exact = vec![1u8; CHUNK * 2];
        assert_eq!(roundtrip(&exact, 0..(CHUNK * 2) as u64), exact);
        assert_eq!(roundtrip(b"abc", 1..3), b"bc");
    }

    #[test]
    fn a_flipped_byte_a_cut_or_a_wrong_key_fails() {
        let pii = pii();
        let plain = vec![5u8; 100_000];
        let mut sealed = Vec::new();
        seal(&pii, plain.as_slice(), &mut sealed).unwrap();
        let header = Header::parse(&sealed).unwrap();
        let all = 0..plain.len() as u64;
        let (chunks, bytes) = header.span(&all, plain.len() as u64);
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert!(
            header
                .open(
                    &pii,
                    chunks.clone(),
                    &bad[bytes.start as usize..],
                    &all,
                    100_000
                )
                .is_err()
        );
        // Cut after the first chunk and claim it is all: its tag says "not last".
        let first = 0..CHUNK as u64;
        let (c, b) = header.span(&first, CHUNK as u64);
        assert!(matches!(
            header.open(
                &pii,
                c,
                &sealed[b.start as usize..b.end as usize],
                &first,
                CHUNK as u64
            ),
            Err(SealError::Tampered)
        ));
        use base64::Engine;
        let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let stranger = Pii::from_spec(&format!("other:{other}"), &other).unwrap();
        assert!(matches!(
            header.open(
                &stranger,
                chunks,
                &sealed[bytes.start as usize..],
                &all,
                100_000
            ),
            Err(SealError::NoKey(_))
        ));
        assert!(Header::parse(b"HRKSEAL1").is_err());
        assert!(Header::parse(b"garbage garbage garbage").is_err());
    }
}
