//! A simulated Twilio caller: speaks Twilio's Media Streams protocol as
//! Twilio documents it, and behaves like Twilio's player.
//!
//! - Sends `connected`, `start` (with `customParameters` and `mediaFormat`),
//!   then a `media` frame every 20 ms of real time for the whole call, paced
//!   against absolute deadlines so it does not drift: queued speech when the
//!   caller talks, μ-law silence otherwise. One sequence counter covers every
//!   message, counters and timestamps are strings.
//! - Keeps a virtual playback queue of the audio the server sends, echoes
//!   each `mark` when playback reaches it, and on `clear` drops the queue and
//!   echoes every pending mark at once.
//! - Observes what a tester needs: response and barge-in timing, stale
//!   frames (media of a cancelled turn after its `clear`, attributed by the
//!   generation in Hark's mark names), protocol errors.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hark_actors::MarkId;
use hark_actors::ulaw::{FRAME_SAMPLES, SILENCE};
use hark_runtime::twilio::messages::{
    DtmfBody, MarkBody, MediaBody, MediaFormat, StartMeta, StopBody,
};
use hark_runtime::twilio::{HarkMessage, StrNum, TwilioEvent};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const FRAME: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct CallerOptions {
    /// The Media Streams URL, e.g. `ws://127.0.0.1:8080/twilio/media`.
    pub url: String,
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    pub custom_parameters: BTreeMap<String, String>,
    /// Echo marks when their audio has played, as Twilio does.
    pub echo_marks: bool,
    /// Keep a log of every server message (tests); otherwise counters only.
    pub record: bool,
}

impl CallerOptions {
    /// Options with Twilio-shaped ids derived from `n`.
    pub fn numbered(url: &str, n: u64) -> Self {
        Self {
            url: url.to_owned(),
            account_sid: format!("AC{:032x}", 0xacc0u64),
            call_sid: format!("CA{n:032x}"),
            stream_sid: format!("MZ{n:032x}"),
            custom_parameters: BTreeMap::new(),
            echo_marks: true,
            record: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("connect to {url} failed: {source}")]
    Connect {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("the call is over")]
    Closed,
}

/// When the caller's speech went out on the wire.
#[derive(Debug, Clone, Copy)]
pub struct SpeechWindow {
    pub started: Instant,
    /// When the last frame of the speech was sent: the end of caller speech.
    pub ended: Instant,
}

/// Something the server sent (or the caller did), with when.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Media {
        at: Instant,
        bytes: usize,
    },
    Mark {
        at: Instant,
        name: String,
    },
    Clear {
        at: Instant,
    },
    Echoed {
        at: Instant,
        name: String,
    },
    Closed {
        at: Instant,
        code: Option<u16>,
        reason: String,
    },
}

/// What the caller has observed so far.
#[derive(Debug)]
pub struct CallerState {
    pub connected_at: Instant,
    pub media_frames: u64,
    pub media_bytes: u64,
    pub last_media_at: Option<Instant>,
    /// When the player's queue runs dry.
    pub playback_end: Instant,
    pub marks_received: u64,
    pub marks_echoed: u64,
    pub clears: Vec<Instant>,
    /// Media of a cancelled turn received after its `clear`.
    pub stale_frames: u64,
    pub protocol_errors: u64,
    pub protocol_error_sample: Option<String>,
    /// Largest lateness of a media frame against its 20 ms deadline.
    pub max_send_lateness: Duration,
    pub closed: Option<(Instant, Option<u16>, String)>,
    pub events: Vec<Event>,
    record: bool,
    pending_marks: VecDeque<(String, Instant)>,
    newest_generation: u64,
    /// After a `clear`: the newest generation cancelled by it, and media
    /// received since that no mark has attributed yet.
    after_clear: Option<(u64, u64)>,
}

impl CallerState {
    fn new(record: bool) -> Self {
        let now = Instant::now();
        Self {
            connected_at: now,
            media_frames: 0,
            media_bytes: 0,
            last_media_at: None,
            playback_end: now,
            marks_received: 0,
            marks_echoed: 0,
            clears: Vec::new(),
            stale_frames: 0,
            protocol_errors: 0,
            protocol_error_sample: None,
            max_send_lateness: Duration::ZERO,
            closed: None,
            events: Vec::new(),
            record,
            pending_marks: VecDeque::new(),
            newest_generation: 0,
            after_clear: None,
        }
    }

    fn log(&mut self, e: Event) {
        if self.record {
            self.events.push(e);
        }
    }

    /// First media received at or after `t`.
    pub fn first_media_since(&self, t: Instant) -> Option<Instant> {
        self.events.iter().find_map(|e| match e {
            Event::Media { at, .. } if *at >= t => Some(*at),
            _ => None,
        })
    }

    /// Media frames received at or after `t`.
    pub fn media_since(&self, t: Instant) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Media { at, .. } if *at >= t))
            .count()
    }

    /// Whether the player has nothing left to play and nothing came for `quiet`.
    pub fn is_idle_for(&self, quiet: Duration, now: Instant) -> bool {
        let last = self.last_media_at.unwrap_or(self.connected_at);
        now >= self.playback_end + quiet && now >= last + quiet
    }

    fn protocol_error(&mut self, what: String) {
        self.protocol_errors += 1;
        self.protocol_error_sample.get_or_insert(what);
    }
}

enum Outgoing {
    Speak(Bytes, oneshot::Sender<SpeechWindow>),
    Dtmf(char),
    Echo(String),
    Raw(Message),
    Hangup,
}

struct Shared {
    state: Mutex<CallerState>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CallerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Caller {
    wire: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Caller {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Caller {
    /// Connects and starts the stream (`connected`, then `start`).
    pub async fn connect(opts: CallerOptions) -> Result<Self, CallerError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(opts.url.as_str(), Some(config), true)
                .await
                .map_err(|e| CallerError::Connect {
                    url: opts.url.clone(),
                    source: Box::new(e),
                })?;
        let (mut sink, stream) = ws.split();
        let send = |e: TwilioEvent<'_>| Message::text(e.to_json());
        let start = TwilioEvent::Start {
            sequence_number: StrNum(1),
            stream_sid: opts.stream_sid.as_str().into(),
            start: StartMeta {
                account_sid: opts.account_sid.clone(),
                stream_sid: opts.stream_sid.clone(),
                call_sid: opts.call_sid.clone(),
                tracks: vec!["inbound".into()],
                custom_parameters: opts.custom_parameters.clone(),
                media_format: MediaFormat::default(),
            },
        };
        let connected = TwilioEvent::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        };
        let sent = async {
            sink.send(send(connected)).await?;
            sink.send(send(start)).await
        };
        sent.await.map_err(|e| CallerError::Connect {
            url: opts.url.clone(),
            source: Box::new(e),
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(CallerState::new(opts.record)),
            changed: Notify::new(),
        });
        let (wire, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(wire_loop(sink, rx, opts.clone(), Arc::clone(&shared)));
        let reader = tokio::spawn(read_loop(
            stream,
            wire.clone(),
            opts.echo_marks,
            Arc::clone(&shared),
        ));
        Ok(Self {
            wire,
            shared,
            tasks: vec![writer, reader],
        })
    }

    /// Speaks `audio` (μ-law) after any speech already queued; returns when it has been sent.
    pub async fn say(&self, audio: impl Into<Bytes>) -> Result<SpeechWindow, CallerError> {
        let (tx, rx) = oneshot::channel();
        self.wire
            .send(Outgoing::Speak(audio.into(), tx))
            .map_err(|_| CallerError::Closed)?;
        rx.await.map_err(|_| CallerError::Closed)
    }

    /// Queues speech and returns at once; the receiver gets its window when sent.
    pub fn say_later(&self, audio: impl Into<Bytes>) -> oneshot::Receiver<SpeechWindow> {
        let (tx, rx) = oneshot::channel();
        let _ = self.wire.send(Outgoing::Speak(audio.into(), tx));
        rx
    }

    pub fn dtmf(&self, digit: char) {
        let _ = self.wire.send(Outgoing::Dtmf(digit));
    }

    /// Sends a text frame as-is (for bad-input tests): no sequence number is used.
    pub fn send_raw_text(&self, text: impl Into<String>) {
        let _ = self.wire.send(Outgoing::Raw(Message::text(text.into())));
    }

    pub fn send_raw_binary(&self, data: Vec<u8>) {
        let _ = self.wire.send(Outgoing::Raw(Message::binary(data)));
    }

    /// Sends `stop` and closes the socket, as Twilio does when the caller hangs up.
    pub fn hangup(&self) {
        let _ = self.wire.send(Outgoing::Hangup);
    }

    /// The observations so far. Hold the guard briefly: the reader needs it too.
    pub fn state(&self) -> MutexGuard<'_, CallerState> {
        self.shared.lock()
    }

    pub fn connected_at(&self) -> Instant {
        self.shared.lock().connected_at
    }

    /// Waits until `pred` holds (re-checked on every event and every 10 ms).
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(&CallerState) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            if pred(&self.shared.lock()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let tick = Instant::now() + Duration::from_millis(10);
            tokio::select! {
                _ = notified => {}
                _ = sleep_until(tick.min(deadline)) => {}
            }
        }
    }

    /// Waits until the bot has gone quiet: nothing left to play for `quiet`.
    pub async fn wait_idle(&self, quiet: Duration, limit: Duration) -> bool {
        self.wait_until(limit, |s| s.is_idle_for(quiet, Instant::now()))
            .await
    }

    /// Waits for the first bot audio at or after `t`.
    pub async fn wait_media_since(&self, t: Instant, limit: Duration) -> Option<Instant> {
        self.wait_until(limit, |s| s.last_media_at.is_some_and(|m| m >= t))
            .await
            .then(|| self.state().first_media_since(t).unwrap_or(t))
    }

    pub async fn wait_closed(&self, limit: Duration) -> Option<(Option<u16>, String)> {
        self.wait_until(limit, |s| s.closed.is_some()).await;
        self.state().closed.clone().map(|(_, c, r)| (c, r))
    }
}

/// Current speech being sent.
struct Speaking {
    audio: Bytes,
    pos: usize,
    started: Option<Instant>,
    done: oneshot::Sender<SpeechWindow>,
}

async fn wire_loop(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    opts: CallerOptions,
    shared: Arc<Shared>,
) {
    let sid = opts.stream_sid.as_str();
    let mut seq = 1u64; // `start` was 1
    let mut chunk = 0u64;
    let mut queue: VecDeque<(Bytes, oneshot::Sender<SpeechWindow>)> = VecDeque::new();
    let mut speaking: Option<Speaking> = None;
    let mut frame = [SILENCE; FRAME_SAMPLES];
    let mut b64 = String::with_capacity(256);
    let epoch = Instant::now();
    let mut next = epoch + FRAME;
    loop {
        tokio::select! {
            biased;
            cmd = rx.recv() => {
                let msg = match cmd {
                    None => return,
                    Some(Outgoing::Speak(audio, done)) => { queue.push_back((audio, done)); continue; }
                    Some(Outgoing::Raw(m)) => m,
                    Some(Outgoing::Dtmf(d)) => {
                        seq += 1;
                        let digit = d.to_string();
                        Message::text(TwilioEvent::Dtmf {
                            stream_sid: sid.into(),
                            sequence_number: StrNum(seq),
                            dtmf: DtmfBody { track: "inbound_track".into(), digit: digit.as_str().into() },
                        }.to_json())
                    }
                    Some(Outgoing::Echo(name)) => {
                        seq += 1;
                        Message::text(TwilioEvent::Mark {
                            sequence_number: StrNum(seq),
                            stream_sid: sid.into(),
                            mark: MarkBody { name: name.as_str().into() },
                        }.to_json())
                    }
                    Some(Outgoing::Hangup) => {
                        seq += 1;
                        let stop = TwilioEvent::Stop {
                            sequence_number: StrNum(seq),
                            stop: StopBody { account_sid: opts.account_sid.as_str().into(), call_sid: opts.call_sid.as_str().into() },
                            stream_sid: sid.into(),
                        };
                        let _ = sink.send(Message::text(stop.to_json())).await;
                        let _ = sink.close().await;
                        return;
                    }
                };
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
            _ = sleep_until(next) => {
                let now = Instant::now();
                let late = now.saturating_duration_since(next);
                next += FRAME;
                if speaking.is_none() {
                    speaking = queue.pop_front().map(|(audio, done)| Speaking { audio, pos: 0, started: None, done });
                }
                let mut finished = None;
                match speaking.as_mut() {
                    Some(s) => {
                        let end = (s.pos + FRAME_SAMPLES).min(s.audio.len());
                        let n = end - s.pos;
                        frame[..n].copy_from_slice(&s.audio[s.pos..end]);
                        frame[n..].fill(SILENCE);
                        s.pos = end;
                        s.started.get_or_insert(now);
                        if s.pos >= s.audio.len() {
                            finished = speaking.take();
                        }
                    }
                    None => frame.fill(SILENCE),
                }
                seq += 1;
                chunk += 1;
                b64.clear();
                STANDARD.encode_string(frame, &mut b64);
                let media = TwilioEvent::Media {
                    sequence_number: StrNum(seq),
                    media: MediaBody {
                        track: "inbound".into(),
                        chunk: StrNum(chunk),
                        timestamp: StrNum((chunk - 1) * 20),
                        payload: b64.as_str().into(),
                    },
                    stream_sid: sid.into(),
                };
                if sink.send(Message::text(media.to_json())).await.is_err() {
                    return;
                }
                if let Some(s) = finished {
                    let started = s.started.unwrap_or(now);
                    let _ = s.done.send(SpeechWindow { started, ended: now });
                }
                let mut st = shared.lock();
                st.max_send_lateness = st.max_send_lateness.max(late);
            }
        }
    }
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    wire: mpsc::UnboundedSender<Outgoing>,
    echo_marks: bool,
    shared: Arc<Shared>,
) {
    let mut decoded = Vec::with_capacity(1024);
    loop {
        let due = shared.lock().pending_marks.front().map(|(_, at)| *at);
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if echo_marks && due.is_some() => {
                echo_due(&shared, &wire, Instant::now());
                continue;
            }
        };
        let now = Instant::now();
        let mut st = shared.lock();
        match msg {
            Some(Ok(Message::Text(text))) => match HarkMessage::parse(text.as_str()) {
                Ok(HarkMessage::Media { media, .. }) => {
                    decoded.clear();
                    if STANDARD
                        .decode_vec(media.payload.as_bytes(), &mut decoded)
                        .is_err()
                    {
                        st.protocol_error("media payload is not base64".into());
                    }
                    let bytes = decoded.len();
                    let play_from = st.playback_end.max(now);
                    st.playback_end = play_from + Duration::from_micros(bytes as u64 * 125);
                    st.media_frames += 1;
                    st.media_bytes += bytes as u64;
                    st.last_media_at = Some(now);
                    if let Some((_, pending)) = st.after_clear.as_mut() {
                        *pending += 1;
                    }
                    st.log(Event::Media { at: now, bytes });
                }
                Ok(HarkMessage::Mark { mark, .. }) => {
                    let name = mark.name.into_owned();
                    st.marks_received += 1;
                    if let Some(id) = MarkId::parse(&name) {
                        if let Some((cancelled, pending)) = st.after_clear {
                            if id.generation <= cancelled {
                                st.stale_frames += pending;
                                st.after_clear = Some((cancelled, 0));
                            } else {
                                st.after_clear = None;
                            }
                        }
                        st.newest_generation = st.newest_generation.max(id.generation);
                    }
                    let due = st.playback_end.max(now);
                    st.pending_marks.push_back((name.clone(), due));
                    st.log(Event::Mark { at: now, name });
                }
                Ok(HarkMessage::Clear { .. }) => {
                    st.clears.push(now);
                    st.playback_end = now;
                    st.after_clear = Some((st.newest_generation, 0));
                    st.log(Event::Clear { at: now });
                    if echo_marks {
                        // Twilio returns every pending mark at once on clear.
                        for (_, due) in st.pending_marks.iter_mut() {
                            *due = now;
                        }
                        drop(st);
                        echo_due(&shared, &wire, now);
                        shared.changed.notify_waiters();
                        continue;
                    }
                }
                Err(e) => st.protocol_error(format!(
                    "{e}: {}",
                    text.chars().take(80).collect::<String>()
                )),
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                    .unwrap_or((None, String::new()));
                st.closed = Some((now, code, reason.clone()));
                st.log(Event::Closed {
                    at: now,
                    code,
                    reason,
                });
                drop(st);
                shared.changed.notify_waiters();
                return;
            }
            Some(Ok(Message::Binary(_))) => {
                st.protocol_error("binary message from the server".into())
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => {
                if st.closed.is_none() {
                    st.closed = Some((now, None, "connection lost".into()));
                    st.log(Event::Closed {
                        at: now,
                        code: None,
                        reason: "connection lost".into(),
                    });
                }
                drop(st);
                shared.changed.notify_waiters();
                return;
            }
        }
        drop(st);
        shared.changed.notify_waiters();
    }
}

/// Echoes every mark whose audio has played by `now`.
fn echo_due(shared: &Shared, wire: &mpsc::UnboundedSender<Outgoing>, now: Instant) {
    let mut st = shared.lock();
    while st.pending_marks.front().is_some_and(|(_, due)| *due <= now) {
        if let Some((name, _)) = st.pending_marks.pop_front() {
            st.marks_echoed += 1;
            st.log(Event::Echoed {
                at: now,
                name: name.clone(),
            });
            let _ = wire.send(Outgoing::Echo(name));
        }
    }
}
