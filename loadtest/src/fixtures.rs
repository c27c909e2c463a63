//! Caller speech: real synthetic speech (espeak-ng) as raw 8 kHz μ-law,
//! made by `tests/fixtures/make_speech.sh` and embedded so the binary runs anywhere.

/// `(name, μ-law audio)` for every fixture.
pub const SPEECH: &[(&str, &[u8])] = &[
    (
        "order",
        include_bytes!("../../tests/fixtures/speech/order.ulaw"),
    ),
    (
        "hours",
        include_bytes!("../../tests/fixtures/speech/hours.ulaw"),
    ),
    (
        "interrupt",
        include_bytes!("../../tests/fixtures/speech/interrupt.ulaw"),
    ),
    (
        "yes",
        include_bytes!("../../tests/fixtures/speech/yes.ulaw"),
    ),
    (
        "thanks",
        include_bytes!("../../tests/fixtures/speech/thanks.ulaw"),
    ),
];

/// The fixture called `name`.
pub fn speech(name: &str) -> Option<&'static [u8]> {
    SPEECH.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Names of all fixtures, for error messages.
pub fn names() -> Vec<&'static str> {
    SPEECH.iter().map(|(n, _)| *n).collect()
}
