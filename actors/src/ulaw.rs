//! G.711 μ-law codec (ITU-T G.711, the "Sun" reference without zero trap).
//!
//! Twilio, Deepgram (`encoding=mulaw`) and ElevenLabs (`ulaw_8000`) all speak
//! 8 kHz μ-law, so this is the only audio codec on the phone path. Pure
//! functions, no I/O, no allocation: callers pass the output buffers.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Samples per 20 ms frame at 8 kHz: the unit Twilio sends and the VAD needs.
pub const FRAME_SAMPLES: usize = 160;

/// μ-law byte for digital silence (decodes to 0).
pub const SILENCE: u8 = 0xFF;

const fn decode_one(byte: u8) -> i16 {
    let u = !byte as i32;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_one(i as u8);
        i += 1;
    }
    table
}

/// Decoding is a table lookup: 512 bytes, hot in L1 on the inbound path.
static DECODE: [i16; 256] = build_decode_table();

/// Decodes one μ-law byte to linear PCM16.
#[inline]
pub fn decode(byte: u8) -> i16 {
    DECODE[byte as usize]
}

/// Encodes one linear PCM16 sample to μ-law.
#[inline]
pub fn encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // s is in [0x84, 0x7FFF]: its top set bit is bit 7..=14, giving exponent 0..=7.
    let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes `input` into `output`; both must have the same length.
pub fn decode_into(input: &[u8], output: &mut [i16]) {
    debug_assert_eq!(input.len(), output.len());
    for (o, &i) in output.iter_mut().zip(input) {
        *o = DECODE[i as usize];
    }
}

/// Encodes `input` into `output`; both must have the same length.
pub fn encode_into(input: &[i16], output: &mut [u8]) {
    debug_assert_eq!(input.len(), output.len());
    for (o, &i) in output.iter_mut().zip(input) {
        *o = encode(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Largest quantisation step for a sample encoded in `exponent`'s segment.
    fn step(sample: i16) -> i32 {
        let s = (sample as i32).abs().min(CLIP) + BIAS;
        let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
        1 << (exponent + 3)
    }

    #[test]
    fn known_values() {
        assert_eq!(encode(0), 0xFF);
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0);
        assert_eq!(decode(0x00), -32124);
        assert_eq!(decode(0x80), 32124);
        assert_eq!(encode(i16::MAX), 0x80);
        assert_eq!(encode(i16::MIN), 0x00);
    }

    #[test]
    fn every_code_survives_decode_encode() {
        for byte in 0..=255u8 {
            let back = encode(decode(byte));
            // 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF.
            if byte == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, byte, "code {byte:#04x}");
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip_error_is_within_half_a_step(sample in any::<i16>()) {
            let back = decode(encode(sample)) as i32;
            let clipped = (sample as i32).clamp(-CLIP, CLIP);
            prop_assert!((back - clipped).abs() <= step(sample) / 2 + 1,
                "sample {sample} -> {back}");
        }

        #[test]
        fn encode_preserves_sign_and_order(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(decode(encode(lo)) <= decode(encode(hi)));
        }

        #[test]
        fn slices_match_scalar(samples in proptest::collection::vec(any::<i16>(), 0..400)) {
            let mut encoded = vec![0u8; samples.len()];
            encode_into(&samples, &mut encoded);
            let mut decoded = vec![0i16; samples.len()];
            decode_into(&encoded, &mut decoded);
            for (i, s) in samples.iter().enumerate() {
                prop_assert_eq!(encoded[i], encode(*s));
                prop_assert_eq!(decoded[i], decode(encoded[i]));
            }
        }
    }
}
