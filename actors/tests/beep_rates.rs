//! The beep detector on the committed fixtures (`tests/fixtures/make_beeps.sh`:
//! espeak-ng speech, sox tones and noise, through μ-law): every beep found
//! where it is, nothing found in hold music, DTMF, speech or noise. Prints
//! the hit and false-alarm rates the README quotes (`cargo test -p
//! hark-actors --test beep_rates -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use hark_actors::beep::BeepDetector;
use hark_actors::ulaw::{FRAME_SAMPLES, decode_into};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/beeps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ulaw"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Each beep found: when it ended (ms from the start), and its length.
fn detect(ulaw: &[u8]) -> Vec<(u32, u32)> {
    let mut d = BeepDetector::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut found = Vec::new();
    for (i, frame) in ulaw.chunks_exact(FRAME_SAMPLES).enumerate() {
        decode_into(frame, &mut pcm);
        if let Some(beep) = d.push(&pcm) {
            found.push(((i as u32 + 1) * 20, beep.ms));
        }
    }
    found
}

/// `beep-…-{ms}ms-…-at{start}` → (start, length) in ms.
fn expected(name: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = name.split('-').collect();
    let at = parts.last()?.strip_prefix("at")?.parse().ok()?;
    let ms = parts
        .iter()
        .find_map(|p| p.strip_suffix("ms")?.parse().ok())?;
    Some((at, ms))
}

#[test]
fn beeps_are_found_where_they_are_and_nowhere_else() {
    let (mut positives, mut hits, mut negatives, mut false_alarms) = (0, 0, 0, 0);
    let mut negative_secs = 0.0;
    let mut misses = Vec::new();
    let mut alarms = Vec::new();
    for (name, audio) in fixtures() {
        let found = detect(&audio);
        match expected(&name) {
            Some((at, ms)) => {
                positives += 1;
                negative_secs += (audio.len() as f64 / 8000.0) - f64::from(ms) / 1000.0;
                // Reported when it ends: within a frame or two of its end.
                type Found = Vec<(u32, u32)>;
                let (hit, other): (Found, Found) = found
                    .iter()
                    .partition(|(end, _)| *end >= at + ms && *end <= at + ms + 60);
                if hit.is_empty() {
                    misses.push(format!("{name}: found {found:?}"));
                } else {
                    hits += 1;
                }
                false_alarms += other.len();
                alarms.extend(other.iter().map(|f| format!("{name}: {f:?}")));
            }
            None => {
                negatives += 1;
                negative_secs += audio.len() as f64 / 8000.0;
                false_alarms += found.len();
                alarms.extend(found.iter().map(|f| format!("{name}: {f:?}")));
            }
        }
    }
    println!(
        "beep detector: {hits}/{positives} beeps found ({:.1}%); {false_alarms} false alarms in {negatives} negative files and {:.0} s of non-beep audio",
        100.0 * f64::from(hits) / f64::from(positives),
        negative_secs
    );
    assert!(positives >= 30 && negatives >= 10, "fixtures missing");
    assert!(misses.is_empty(), "missed: {misses:#?}");
    assert!(alarms.is_empty(), "false alarms: {alarms:#?}");
}
