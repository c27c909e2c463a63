//! Stereo μ-law 8 kHz → Ogg Opus (RFC 7845), streamed: 20 ms in, one
//! packet out, a page a second. Memory is a frame and a page, whatever the
//! call's length. [`decode`] reads it back (tests, `hark recording check`).

use std::io::{Read, Write};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use hark_actors::ulaw;

/// Samples per channel in one 20 ms packet at 8 kHz.
const FRAME: usize = 160;
/// Ogg granule positions count 48 kHz samples whatever the input rate.
const GRANULE_PER_SAMPLE: u64 = 48_000 / 8_000;
/// Packets per page: a page a second, so a player seeks within a second.
const PACKETS_PER_PAGE: u64 = 50;
/// Voice at 8 kHz, two channels: 24 kbit/s in all (3 KB a second).
const BITRATE: i32 = 24_000;
const SERIAL: u32 = 0x4841_524b; // "HARK"

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(#[from] audiopus::Error),
    #[error("ogg: {0}")]
    Ogg(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an Ogg Opus recording: {0}")]
    Format(&'static str),
}

/// What an encode produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Samples per channel (8 kHz).
    pub samples: u64,
    pub bytes: u64,
}

/// libopus's effort, 0–10: 5 costs half of 10 (measured: README,
/// Recordings) for narrowband voice that sounds the same.
pub const DEFAULT_COMPLEXITY: u8 = 5;

/// Encodes interleaved stereo μ-law (caller, bot) from `input` into Ogg
/// Opus on `output`, at `complexity` (0–10).
pub fn encode(
    mut input: impl Read,
    output: impl Write,
    complexity: u8,
) -> Result<Encoded, OpusError> {
    let mut encoder = Encoder::new(SampleRate::Hz8000, Channels::Stereo, Application::Voip)?;
    encoder.set_bitrate(Bitrate::BitsPerSecond(BITRATE))?;
    encoder.set_complexity(complexity.min(10))?;
    // OpusHead's pre-skip is in 48 kHz samples; the lookahead is at the input rate.
    let pre_skip = encoder.lookahead()? as u64 * GRANULE_PER_SAMPLE;
    let counter = Counting {
        inner: output,
        bytes: 0,
    };
    let mut ogg = PacketWriter::new(counter);
    let ogg_err = |e: std::io::Error| OpusError::Ogg(e.to_string());
    ogg.write_packet(
        head(pre_skip as u16),
        SERIAL,
        PacketWriteEndInfo::EndPage,
        0,
    )
    .map_err(ogg_err)?;
    ogg.write_packet(tags(), SERIAL, PacketWriteEndInfo::EndPage, 0)
        .map_err(ogg_err)?;

    let lookahead = pre_skip / GRANULE_PER_SAMPLE;
    let mut raw = [0u8; FRAME * 2];
    let mut pcm = [0i16; FRAME * 2];
    let mut packet = [0u8; 1500];
    let mut samples = 0u64;
    let mut encoded = 0u64;
    let mut packets = 0u64;
    let mut input_done = false;
    // One packet is held back so the last can be marked as the stream's end.
    let mut pending: Option<Vec<u8>> = None;
    loop {
        let got = if input_done {
            0
        } else {
            read_full(&mut input, &mut raw)?
        };
        if got < raw.len() {
            input_done = true;
        }
        // The encoder holds `lookahead` samples back: after the input, silent
        // frames push them out. The end granule trims the padding.
        if got == 0 && (encoded >= samples + lookahead && pending.is_some()) {
            break;
        }
        raw[got..].fill(ulaw::SILENCE);
        ulaw::decode_into(&raw, &mut pcm);
        let len = encoder.encode(&pcm, &mut packet)?;
        if let Some(previous) = pending.take() {
            packets += 1;
            let end = if packets.is_multiple_of(PACKETS_PER_PAGE) {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            // Samples decoded once this packet is (pre-skip included),
            // never past the stream's end.
            let granule =
                (encoded * GRANULE_PER_SAMPLE).min(pre_skip + samples * GRANULE_PER_SAMPLE);
            ogg.write_packet(previous, SERIAL, end, granule)
                .map_err(ogg_err)?;
        }
        samples += (got / 2) as u64;
        encoded += FRAME as u64;
        pending = Some(packet.get(..len).unwrap_or_default().to_vec());
    }
    if let Some(last) = pending {
        ogg.write_packet(
            last,
            SERIAL,
            PacketWriteEndInfo::EndStream,
            pre_skip + samples * GRANULE_PER_SAMPLE,
        )
        .map_err(ogg_err)?;
    }
    let mut counter = ogg.into_inner();
    counter.flush()?;
    Ok(Encoded {
        samples,
        bytes: counter.bytes,
    })
}

/// Fills `buf` as far as the input goes, whole stereo samples only.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    Ok(super::sealed::read_full(input, buf)? & !1)
}

fn head(pre_skip: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes()); // the input's rate, for players
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family 0: mono or stereo
    h
}

fn tags() -> Vec<u8> {
    let vendor = b"hark";
    let comments: [&[u8]; 2] = [b"TITLE=call recording", b"CHANNELS=caller,bot"];
    let mut t = Vec::new();
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    t.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in comments {
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c);
    }
    t
}

struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A decoded recording: 8 kHz PCM per channel, pre-skip and end padding trimmed.
#[derive(Debug, Default)]
pub struct Decoded {
    pub channels: u8,
    pub caller: Vec<i16>,
    pub bot: Vec<i16>,
}

/// Decodes an Ogg Opus stream (the whole of it: for checks and tests).
pub fn decode(input: impl Read + std::io::Seek) -> Result<Decoded, OpusError> {
    let mut reader = ogg::reading::PacketReader::new(input);
    let mut next = || {
        reader
            .read_packet()
            .map_err(|e| OpusError::Ogg(e.to_string()))
    };
    let head = next()?.ok_or(OpusError::Format("empty"))?;
    let data = &head.data;
    if data.len() < 19 || data.get(..8) != Some(b"OpusHead") {
        return Err(OpusError::Format("no OpusHead"));
    }
    let channels = data[9];
    let pre_skip = u16::from_le_bytes([data[10], data[11]]) as u64;
    if channels != 2 {
        return Err(OpusError::Format("not two channels"));
    }
    let tags = next()?.ok_or(OpusError::Format("no OpusTags"))?;
    if tags.data.get(..8) != Some(b"OpusTags") {
        return Err(OpusError::Format("no OpusTags"));
    }
    let mut decoder = Decoder::new(SampleRate::Hz8000, Channels::Stereo)?;
    let mut pcm = vec![0i16; 5760 * 2];
    let mut out = Decoded {
        channels,
        ..Decoded::default()
    };
    let mut last_granule = 0;
    while let Some(packet) = next()? {
        let n = decoder.decode(Some(packet.data.as_slice()), pcm.as_mut_slice(), false)?;
        for frame in pcm.chunks_exact(2).take(n) {
            out.caller.push(frame[0]);
            out.bot.push(frame[1]);
        }
        if packet.last_in_page() {
            last_granule = packet.absgp_page();
        }
    }
    let skip = (pre_skip / GRANULE_PER_SAMPLE) as usize;
    let total = (last_granule.saturating_sub(pre_skip) / GRANULE_PER_SAMPLE) as usize;
    for ch in [&mut out.caller, &mut out.bot] {
        ch.drain(..skip.min(ch.len()));
        ch.truncate(total);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved stereo μ-law: a 400 Hz tone on the caller channel for
    /// the first second, on the bot channel for the second.
    fn two_tones() -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..16_000u32 {
            let t = i as f32 / 8000.0;
            let s = ((t * 400.0 * std::f32::consts::TAU).sin() * 8000.0) as i16;
            let (caller, bot) = if i < 8000 { (s, 0) } else { (0, s) };
            out.push(ulaw::encode(caller));
            out.push(ulaw::encode(bot));
        }
        out
    }

    fn energy(samples: &[i16]) -> f64 {
        samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64
    }

    #[test]
    fn a_recording_decodes_back_to_its_length_and_channels() {
        let input = two_tones();
        let mut ogg = Vec::new();
        let encoded = encode(input.as_slice(), &mut ogg, DEFAULT_COMPLEXITY).unwrap();
        assert_eq!(encoded.samples, 16_000);
        assert_eq!(encoded.bytes, ogg.len() as u64);
        assert_eq!(&ogg[..4], b"OggS");
        // ~24 kbit/s: well under the 16 KB/s of the μ-law it came from.
        assert!(ogg.len() < 8000, "{}", ogg.len());
        let decoded = decode(std::io::Cursor::new(ogg)).unwrap();
        assert_eq!(decoded.caller.len(), 16_000);
        assert_eq!(decoded.bot.len(), 16_000);
        // The tone is where it was put; the other channel is near silent.
        let (c1, c2) = (
            energy(&decoded.caller[800..7200]),
            energy(&decoded.caller[8800..15_200]),
        );
        let (b1, b2) = (
            energy(&decoded.bot[800..7200]),
            energy(&decoded.bot[8800..15_200]),
        );
        assert!(c1 > 100.0 * c2.max(1.0), "caller {c1} vs {c2}");
        assert!(b2 > 100.0 * b1.max(1.0), "bot {b2} vs {b1}");
    }

    /// `opusinfo` (opus-tools; `tests/services.sh` installs it) reads what
    /// we write as a valid stream of the right length.
    #[test]
    fn opusinfo_reads_it() {
        let mut ogg = Vec::new();
        encode(two_tones().as_slice(), &mut ogg, DEFAULT_COMPLEXITY).unwrap();
        let file = std::env::temp_dir().join(format!("hark-opusinfo-{}.opus", std::process::id()));
        std::fs::write(&file, &ogg).unwrap();
        let out = std::process::Command::new("opusinfo").arg(&file).output();
        let _ = std::fs::remove_file(&file);
        let out = out.expect("opusinfo (opus-tools) is installed by tests/services.sh");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        assert!(text.contains("Channels: 2"), "{text}");
        assert!(text.contains("Playback length: 0m:02.000s"), "{text}");
    }

    #[test]
    fn odd_lengths_and_empty_input_still_make_a_valid_stream() {
        for len in [0usize, 2, 318, 322, 1601 * 2] {
            let input = vec![ulaw::SILENCE; len];
            let mut ogg = Vec::new();
            let encoded = encode(input.as_slice(), &mut ogg, DEFAULT_COMPLEXITY).unwrap();
            assert_eq!(encoded.samples, (len / 2) as u64);
            let decoded = decode(std::io::Cursor::new(ogg)).unwrap();
            assert_eq!(decoded.caller.len(), len / 2, "len {len}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"OggS", b"not ogg at all, not at all"] {
            assert!(decode(std::io::Cursor::new(bad.to_vec())).is_err());
        }
    }
}
