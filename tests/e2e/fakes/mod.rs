//! Local fakes of the providers Hark calls, speaking each one's documented
//! wire protocol (URLs, auth headers, JSON shapes, WebSocket messages), with
//! faults a test can inject: delay, drop mid-stream, HTTP errors, malformed
//! JSON, stalls. They transcribe and synthesize for real, crudely: the
//! "transcript" of caller audio is how much speech it held (`N milliseconds
//! of speech`), found by energy, and synthesized speech is a tone as long as the
//! text deserves — enough to check that no word or sentence is lost.

pub mod deepgram;
pub mod elevenlabs;
pub mod openai;
pub mod twilio;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;

/// A fake's listener; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What a fake does wrong on one request or session.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this HTTP status (and the provider's error JSON).
    Status(u16),
    /// Wait this long before answering at all.
    Delay(Duration),
    /// Start answering, then cut the connection after this many chunks.
    DropAfter(usize),
    /// Send a chunk that is not JSON.
    Malformed,
    /// Accept, then never answer.
    Stall,
    /// Send the provider's in-band error message.
    Error,
}

/// Faults for successive requests: queued ones first (one each), then
/// `always`, if set.
#[derive(Default)]
pub struct Faults {
    queue: Mutex<VecDeque<Fault>>,
    always: Mutex<Option<Fault>>,
}

impl Faults {
    pub fn push(&self, fault: Fault) {
        self.queue.lock().unwrap().push_back(fault);
    }

    pub fn always(&self, fault: Option<Fault>) {
        *self.always.lock().unwrap() = fault;
    }

    pub fn next(&self) -> Option<Fault> {
        self.queue
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.always.lock().unwrap().clone())
    }
}

/// 20 ms at 8 kHz.
pub const FRAME: usize = 160;

/// Whether 20 ms of audio holds speech: mean amplitude above a floor well
/// over line noise and far under espeak's voiced frames.
pub fn is_speech(samples: &[i16]) -> bool {
    let sum: u64 = samples.iter().map(|s| s.unsigned_abs() as u64).sum();
    sum / samples.len().max(1) as u64 > 300
}

/// The fakes' transcript of `speech_ms` of speech.
pub fn transcript(speech_ms: u64) -> String {
    format!("{speech_ms} milliseconds of speech")
}

/// A 330 Hz tone of `ms`, as 16-bit samples at `rate`.
pub fn tone(ms: u64, rate: u32) -> impl Iterator<Item = i16> {
    let n = ms * rate as u64 / 1000;
    (0..n).map(move |i| {
        let t = i as f32 / rate as f32;
        ((2.0 * std::f32::consts::PI * 330.0 * t).sin() * 8000.0) as i16
    })
}

/// How long a fake speaks `text`: 40 ms a character, at least 200 ms.
pub fn speech_len(text: &str) -> u64 {
    (text.trim().chars().count() as u64 * 40).max(200)
}

/// Every provider, each on its own port, and the environment that points a
/// `hark serve` at them with test keys.
pub struct Fakes {
    pub deepgram: deepgram::Deepgram,
    pub openai: openai::OpenAi,
    pub elevenlabs: elevenlabs::ElevenLabs,
    pub twilio: twilio::Twilio,
}

pub const DEEPGRAM_KEY: &str = "dg-test-key";
pub const OPENAI_KEY: &str = "sk-test-key";
pub const ELEVENLABS_KEY: &str = "el-test-key";
pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
pub const TWILIO_TOKEN: &str = "twilio-test-token";

impl Fakes {
    pub async fn start() -> Self {
        Self {
            deepgram: deepgram::Deepgram::start(DEEPGRAM_KEY).await,
            openai: openai::OpenAi::start(OPENAI_KEY).await,
            elevenlabs: elevenlabs::ElevenLabs::start(ELEVENLABS_KEY).await,
            twilio: twilio::Twilio::start(TWILIO_SID, TWILIO_TOKEN).await,
        }
    }

    /// Keys and base URLs for `hark`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("DEEPGRAM_API_KEY", DEEPGRAM_KEY.to_owned()),
            ("OPENAI_API_KEY", OPENAI_KEY.to_owned()),
            ("ELEVENLABS_API_KEY", ELEVENLABS_KEY.to_owned()),
            ("TWILIO_ACCOUNT_SID", TWILIO_SID.to_owned()),
            ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN.to_owned()),
            ("HARK_PROVIDERS__DEEPGRAM__BASE_URL", self.deepgram.url()),
            (
                "HARK_PROVIDERS__OPENAI__BASE_URL",
                format!("{}/v1", self.openai.url()),
            ),
            (
                "HARK_PROVIDERS__ELEVENLABS__BASE_URL",
                self.elevenlabs.url(),
            ),
            ("HARK_PROVIDERS__TWILIO__BASE_URL", self.twilio.url()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
