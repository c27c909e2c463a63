//! The answering machine's beep, heard on the call's own audio: pure, one
//! 20 ms frame at a time, no allocation per frame.
//!
//! Algorithm: a Goertzel filter bank (69 bins, 300–2,000 Hz every 25 Hz)
//! over each 20 ms frame. A frame is *tonal* when its strongest bin holds at
//! least half of the frame's whole energy (so harmonics, chords, speech and
//! noise fail) and no bin 100 Hz or more away from it holds a tenth of the
//! strongest (so DTMF's two tones fail, even with 8 dB of twist). A beep is
//! at least [`MIN_FRAMES`] tonal frames in a row whose peak stays within
//! 50 Hz of where it started — a 150 ms tone covers at least seven frames by
//! half or more — and it is reported when it ends (the first frame that is
//! not the same tone), so a message left then starts after it. Tones longer
//! than [`MAX_FRAMES`] are not beeps (dial and busy tones are pairs anyway;
//! this also skips a long test tone).
//!
//! A 20 ms window resolves 50 Hz; the 25 Hz grid keeps a tone between two
//! bins within 1 dB of its true power.

use crate::ulaw::FRAME_SAMPLES;

const RATE: f32 = 8_000.0;
const LOW_HZ: f32 = 300.0;
const STEP_HZ: f32 = 25.0;
const BINS: usize = 69;
/// Tonal frames a beep needs: 140 ms, what a 150 ms tone always covers.
pub const MIN_FRAMES: u32 = 7;
/// Tonal frames after which a tone is too long to be a beep (4 s).
pub const MAX_FRAMES: u32 = 200;
/// Share of the frame's energy the strongest bin must hold.
const PURITY: f32 = 0.5;
/// A second component this strong (relative to the first), 100 Hz or more
/// away, makes the frame two tones.
const SECOND: f32 = 0.1;
/// Bins of 25 Hz that are "the same tone" (±50 Hz).
const SAME_TONE_BINS: usize = 2;
/// Bins a second component must be away (100 Hz).
const APART_BINS: usize = 4;
/// Frames quieter than -45 dBFS (mean square of full-scale samples) are silence.
const FLOOR: f32 = 32_768.0 * 32_768.0 * 3.162e-5;

/// A beep that ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beep {
    pub hz: f32,
    pub ms: u32,
}

#[derive(Debug, Clone)]
pub struct BeepDetector {
    coeffs: [f32; BINS],
    /// Tonal frames in the current run, and the bin it started at.
    run: u32,
    run_bin: usize,
}

impl Default for BeepDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BeepDetector {
    pub fn new() -> Self {
        let mut coeffs = [0.0; BINS];
        for (i, c) in coeffs.iter_mut().enumerate() {
            let hz = LOW_HZ + STEP_HZ * i as f32;
            *c = 2.0 * (std::f32::consts::TAU * hz / RATE).cos();
        }
        Self {
            coeffs,
            run: 0,
            run_bin: 0,
        }
    }

    /// Feeds one frame; a beep that just ended, if any.
    pub fn push(&mut self, pcm: &[i16; FRAME_SAMPLES]) -> Option<Beep> {
        match self.tone(pcm) {
            Some(bin) if self.run > 0 && bin.abs_diff(self.run_bin) <= SAME_TONE_BINS => {
                self.run = self.run.saturating_add(1);
                None
            }
            next => {
                let ended = self.ended();
                self.run = u32::from(next.is_some());
                self.run_bin = next.unwrap_or(0);
                ended
            }
        }
    }

    /// The run that just stopped, if it was a beep.
    fn ended(&self) -> Option<Beep> {
        (MIN_FRAMES..=MAX_FRAMES).contains(&self.run).then(|| Beep {
            hz: LOW_HZ + STEP_HZ * self.run_bin as f32,
            ms: self.run * 20,
        })
    }

    /// The bin of the frame's single tone, if it is one.
    fn tone(&self, pcm: &[i16; FRAME_SAMPLES]) -> Option<usize> {
        let mut samples = [0.0f32; FRAME_SAMPLES];
        let mut energy = 0.0f32;
        for (s, &x) in samples.iter_mut().zip(pcm) {
            *s = f32::from(x);
            energy += *s * *s;
        }
        if energy < FLOOR * FRAME_SAMPLES as f32 {
            return None;
        }
        // Every bin's recurrence at once, sample by sample: the bins are
        // independent, so the inner loop vectorizes (one bin at a time is a
        // chain of dependent multiply-adds, ~10× slower).
        let (mut s1, mut s2) = ([0.0f32; BINS], [0.0f32; BINS]);
        for &x in &samples {
            for k in 0..BINS {
                let s0 = x + self.coeffs[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        let mut powers = [0.0f32; BINS];
        for k in 0..BINS {
            powers[k] = s1[k] * s1[k] + s2[k] * s2[k] - self.coeffs[k] * s1[k] * s2[k];
        }
        let (peak, strongest) =
            powers.iter().enumerate().fold(
                (0, 0.0f32),
                |best, (i, &p)| if p > best.1 { (i, p) } else { best },
            );
        // A sinusoid's power at its own frequency is (A·N/2)², its energy A²·N/2.
        let purity = 2.0 * strongest / (FRAME_SAMPLES as f32 * energy);
        if purity < PURITY {
            return None;
        }
        let second = powers
            .iter()
            .enumerate()
            .filter(|(i, _)| i.abs_diff(peak) >= APART_BINS)
            .map(|(_, &p)| p)
            .fold(0.0f32, f32::max);
        (second < SECOND * strongest).then_some(peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: &[f32], dbfs: f32, ms: usize) -> Vec<[i16; FRAME_SAMPLES]> {
        let amp = 32_767.0 * 10f32.powf(dbfs / 20.0) / hz.len() as f32;
        let n = ms * 8;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f32 / RATE;
                hz.iter()
                    .map(|f| amp * (std::f32::consts::TAU * f * t).sin())
                    .sum::<f32>() as i16
            })
            .collect();
        frames(&samples)
    }

    fn frames(samples: &[i16]) -> Vec<[i16; FRAME_SAMPLES]> {
        samples
            .chunks(FRAME_SAMPLES)
            .map(|c| {
                let mut f = [0i16; FRAME_SAMPLES];
                f[..c.len()].copy_from_slice(c);
                f
            })
            .collect()
    }

    fn silence(ms: usize) -> Vec<[i16; FRAME_SAMPLES]> {
        vec![[0; FRAME_SAMPLES]; ms / 20]
    }

    fn beeps(audio: &[[i16; FRAME_SAMPLES]]) -> Vec<Beep> {
        let mut d = BeepDetector::new();
        audio.iter().filter_map(|f| d.push(f)).collect()
    }

    #[test]
    fn single_tones_from_300_to_2000_hz_are_beeps_when_they_end() {
        for hz in [300.0, 440.0, 1000.0, 1012.5, 1400.0, 1990.0] {
            let audio = [silence(100), tone(&[hz], -20.0, 400), silence(100)].concat();
            let found = beeps(&audio);
            assert_eq!(found.len(), 1, "{hz} Hz: {found:?}");
            assert!((found[0].hz - hz).abs() <= 25.0, "{hz} Hz: {found:?}");
            assert_eq!(found[0].ms, 400, "{hz} Hz");
        }
    }

    #[test]
    fn a_150_ms_beep_counts_wherever_it_starts_and_a_100_ms_one_does_not() {
        for offset in [0, 3, 5, 10, 15, 19] {
            let pad: Vec<i16> = vec![0; offset * 8];
            let t = tone(&[1000.0], -20.0, 150).concat();
            let audio = frames(&[pad, t, vec![0; 800]].concat());
            assert_eq!(beeps(&audio).len(), 1, "offset {offset} ms");
            let t = tone(&[1000.0], -20.0, 100).concat();
            let audio = frames(&[vec![0; offset * 8], t, vec![0; 800]].concat());
            assert!(beeps(&audio).is_empty(), "100 ms at offset {offset} ms");
        }
    }

    #[test]
    fn dtmf_pairs_chords_out_of_band_and_quiet_tones_are_not_beeps() {
        // 5 (770 + 1336 Hz), equal and with 8 dB of twist.
        assert!(beeps(&tone(&[770.0, 1336.0], -10.0, 500)).is_empty());
        let twisted: Vec<_> = tone(&[770.0], -18.0, 500)
            .iter()
            .zip(tone(&[1336.0], -10.0, 500))
            .map(|(a, b)| {
                let mut f = [0i16; FRAME_SAMPLES];
                for i in 0..FRAME_SAMPLES {
                    f[i] = a[i].saturating_add(b[i]);
                }
                f
            })
            .collect();
        assert!(beeps(&twisted).is_empty());
        assert!(beeps(&tone(&[440.0, 554.0, 659.0], -10.0, 800)).is_empty());
        assert!(beeps(&tone(&[150.0], -10.0, 500)).is_empty());
        assert!(beeps(&tone(&[2600.0], -10.0, 500)).is_empty());
        assert!(beeps(&tone(&[1000.0], -60.0, 500)).is_empty());
    }

    #[test]
    fn a_tone_longer_than_four_seconds_is_not_a_beep_nor_is_a_glide() {
        assert!(beeps(&[tone(&[1000.0], -20.0, 5000), silence(100)].concat()).is_empty());
        // 400 → 1600 Hz over 600 ms: every frame a tone, never the same one.
        let glide: Vec<i16> = (0..4800)
            .map(|i| {
                let t = i as f32 / RATE;
                let phase = std::f32::consts::TAU * (400.0 * t + 1000.0 * t * t);
                (3000.0 * phase.sin()) as i16
            })
            .collect();
        assert!(beeps(&frames(&glide)).is_empty());
    }
}
