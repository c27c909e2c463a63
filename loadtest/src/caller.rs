//! A simulated Twilio caller: speaks Twilio's Media Streams protocol as
//! Twilio documents it, and behaves like Twilio's player.
//!
//! - Sends `connected`, `start` (with `customParameters` and `mediaFormat`),
//!   then a `media` frame every 20 ms of real time for the whole call, paced
//!   against absolute deadlines so it does not drift: queued speech while the
//!   caller talks, μ-law silence otherwise. One sequence counter covers every
//!   message; counters and timestamps are strings.
//! - Keeps a virtual playback queue of the audio the server sends, echoes
//!   each `mark` when playback reaches it, and on `clear` drops the queue and
//!   echoes every pending mark at once.
//! - Observes what a tester needs: response and barge-in timing, stale
//!   frames (media of a cancelled turn after its `clear`, attributed by the
//!   generation in Hark's mark names), protocol errors, its own lateness.
//!
//! One task per caller owns the socket (no split halves, no locks on the
//! hot path) and one timer. Waits ("until the bot is quiet", "until a
//! `clear`") are evaluated by that task as events arrive, so thousands of
//! waiting callers cost nothing while they wait.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hark_actors::ulaw::{FRAME_SAMPLES, SILENCE};
use hark_carrier::port::Checkpoint;
use hark_carrier::twilio::messages::{
    DtmfBody, MarkBody, MediaBody, MediaFormat, StartMeta, StopBody,
};
use hark_carrier::twilio::{HarkMessage, StrNum, TwilioEvent};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::Recorder;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const FRAME: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub struct CallerOptions {
    /// The Media Streams URL, e.g. `ws://127.0.0.1:8080/twilio/media`.
    pub url: String,
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    pub custom_parameters: BTreeMap<String, String>,
    /// Extra headers on the WebSocket upgrade (e.g. `X-Twilio-Signature`).
    pub headers: Vec<(String, String)>,
    /// Echo marks when their audio has played, as Twilio does.
    pub echo_marks: bool,
    /// Keep a log of every server message (tests); otherwise counters only.
    pub record: bool,
    /// Where send lateness is recorded (load runs).
    pub recorder: Option<Arc<Recorder>>,
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
            headers: Vec::new(),
            echo_marks: true,
            record: true,
            recorder: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    // The cause is in the message, not a `source`: the error chain prints it once.
    #[error("connect to {url} failed: {error}")]
    Connect {
        url: String,
        error: Box<tokio_tungstenite::tungstenite::Error>,
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
    pub frames_sent: u64,
    pub closed: Option<(Instant, Option<u16>, String)>,
    pub events: Vec<Event>,
    record: bool,
    pending_marks: VecDeque<(String, Instant)>,
    newest_generation: u64,
    /// After a `clear`: the newest generation it cancelled, and media received
    /// since that no mark has attributed yet.
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
            frames_sent: 0,
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

    /// First media received at or after `t` (needs `record`).
    pub fn first_media_since(&self, t: Instant) -> Option<Instant> {
        self.events.iter().find_map(|e| match e {
            Event::Media { at, .. } if *at >= t => Some(*at),
            _ => None,
        })
    }

    /// Media messages received at or after `t` (needs `record`).
    pub fn media_since(&self, t: Instant) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Media { at, .. } if *at >= t))
            .count()
    }

    /// Audio received at or after `t` (needs `record`).
    pub fn audio_since(&self, t: Instant) -> Duration {
        let bytes: usize = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Media { at, bytes } if *at >= t => Some(*bytes),
                _ => None,
            })
            .sum();
        Duration::from_micros(bytes as u64 * 125)
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

    fn satisfied(&self, cond: &Condition, now: Instant) -> Option<Instant> {
        match *cond {
            Condition::MediaSince(t) => self.last_media_at.filter(|m| *m >= t),
            Condition::Idle(quiet) => self.is_idle_for(quiet, now).then_some(now),
            Condition::ClearsAbove(n) => self.clears.get(n).copied(),
            Condition::Closed => self.closed.as_ref().map(|c| c.0),
        }
    }
}

/// What a caller can wait for.
#[derive(Debug, Clone, Copy)]
pub enum Condition {
    /// The first bot media at or after an instant; resolves with its arrival.
    MediaSince(Instant),
    /// Nothing left to play and no media for this long.
    Idle(Duration),
    /// More than `n` clears received; resolves with the (n+1)-th.
    ClearsAbove(usize),
    Closed,
}

enum Control {
    Speak(Bytes, oneshot::Sender<SpeechWindow>),
    Dtmf(char),
    Raw(Message),
    Hangup,
    Wait(Condition, oneshot::Sender<Instant>),
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
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Caller {
    /// Connects and starts the stream (`connected`, then `start`).
    pub async fn connect(opts: CallerOptions) -> Result<Self, CallerError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let connect_err = |e| CallerError::Connect {
            url: opts.url.clone(),
            error: Box::new(e),
        };
        let mut request = opts
            .url
            .as_str()
            .into_client_request()
            .map_err(connect_err)?;
        for (name, value) in &opts.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) else {
                return Err(connect_err(tokio_tungstenite::tungstenite::Error::Url(
                    UrlError::UnableToConnect(format!("bad header {name:?}")),
                )));
            };
            request.headers_mut().insert(name, value);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(connect_err)?;
        let connected = TwilioEvent::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        };
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
        ws.send(Message::text(connected.to_json()))
            .await
            .map_err(connect_err)?;
        ws.send(Message::text(start.to_json()))
            .await
            .map_err(connect_err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(CallerState::new(opts.record)),
            changed: Notify::new(),
        });
        let (control, rx) = mpsc::unbounded_channel();
        let io = Io {
            ws,
            rx,
            shared: Arc::clone(&shared),
            seq: 1,
            chunk: 0,
            speaking: None,
            queue: VecDeque::new(),
            waiters: Vec::new(),
            b64: String::with_capacity(256),
            decoded: Vec::with_capacity(1024),
            hanging_up: false,
            next_mark_due: None,
            frames_sent: 0,
            max_lateness: Duration::ZERO,
            opts,
        };
        let task = tokio::spawn(io.run());
        Ok(Self {
            control,
            shared,
            task,
        })
    }

    fn send(&self, c: Control) -> Result<(), CallerError> {
        self.control.send(c).map_err(|_| CallerError::Closed)
    }

    /// Speaks `audio` (μ-law) after any speech already queued; returns when it has been sent.
    pub async fn say(&self, audio: impl Into<Bytes>) -> Result<SpeechWindow, CallerError> {
        self.say_later(audio).await.map_err(|_| CallerError::Closed)
    }

    /// Queues speech and returns at once; the receiver gets its window when sent.
    pub fn say_later(&self, audio: impl Into<Bytes>) -> oneshot::Receiver<SpeechWindow> {
        let (tx, rx) = oneshot::channel();
        let _ = self.send(Control::Speak(audio.into(), tx));
        rx
    }

    pub fn dtmf(&self, digit: char) {
        let _ = self.send(Control::Dtmf(digit));
    }

    /// Sends a text frame as-is (for bad-input tests): no sequence number is used.
    pub fn send_raw_text(&self, text: impl Into<String>) {
        let _ = self.send(Control::Raw(Message::text(text.into())));
    }

    pub fn send_raw_binary(&self, data: Vec<u8>) {
        let _ = self.send(Control::Raw(Message::binary(data)));
    }

    /// Sends `stop` and closes the socket, as Twilio does when the caller hangs up.
    pub fn hangup(&self) {
        let _ = self.send(Control::Hangup);
    }

    /// The observations so far. Hold the guard briefly: the caller's task needs it too.
    pub fn state(&self) -> MutexGuard<'_, CallerState> {
        self.shared.lock()
    }

    pub fn connected_at(&self) -> Instant {
        self.shared.lock().connected_at
    }

    /// Waits for `cond`, evaluated by the caller's task as things happen.
    pub async fn wait_for(&self, cond: Condition, limit: Duration) -> Option<Instant> {
        let (tx, rx) = oneshot::channel();
        if self.send(Control::Wait(cond, tx)).is_err() {
            // The call is over: what was observed is final.
            return self.shared.lock().satisfied(&cond, Instant::now());
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(at)) => Some(at),
            Ok(Err(_)) => self.shared.lock().satisfied(&cond, Instant::now()),
            Err(_) => None,
        }
    }

    /// Waits until an arbitrary predicate holds (re-checked on every event and
    /// every 10 ms). For tests; load runs use [`Caller::wait_for`].
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
        self.wait_for(Condition::Idle(quiet), limit).await.is_some()
    }

    /// Waits for the first bot audio at or after `t`; when it arrived.
    pub async fn wait_media_since(&self, t: Instant, limit: Duration) -> Option<Instant> {
        self.wait_for(Condition::MediaSince(t), limit).await
    }

    pub async fn wait_closed(&self, limit: Duration) -> Option<(Option<u16>, String)> {
        self.wait_for(Condition::Closed, limit).await?;
        self.state().closed.clone().map(|(_, c, r)| (c, r))
    }
}

/// Speech being sent.
struct Speaking {
    audio: Bytes,
    pos: usize,
    started: Option<Instant>,
    done: oneshot::Sender<SpeechWindow>,
}

/// The caller's task: the socket, the microphone, the player.
struct Io {
    ws: Ws,
    rx: mpsc::UnboundedReceiver<Control>,
    shared: Arc<Shared>,
    opts: CallerOptions,
    seq: u64,
    chunk: u64,
    speaking: Option<Speaking>,
    queue: VecDeque<(Bytes, oneshot::Sender<SpeechWindow>)>,
    waiters: Vec<(Condition, oneshot::Sender<Instant>)>,
    b64: String,
    decoded: Vec<u8>,
    /// `stop` was sent and the close handshake started: no more media.
    hanging_up: bool,
    /// When the first pending mark is due (a copy, so the loop takes no lock).
    next_mark_due: Option<Instant>,
    frames_sent: u64,
    max_lateness: Duration,
}

/// Why the task stopped.
enum Exit {
    Hangup,
    Lost,
}

impl Io {
    async fn run(mut self) {
        let mut next_frame = Instant::now() + FRAME;
        let timer = tokio::time::sleep_until(next_frame);
        tokio::pin!(timer);
        let exit = loop {
            let wake = match self.next_mark_due {
                Some(due) if self.opts.echo_marks && !self.hanging_up => due.min(next_frame),
                _ => next_frame,
            };
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            let step = tokio::select! {
                biased;
                msg = self.ws.next() => self.on_server(msg).await,
                cmd = self.rx.recv() => self.on_control(cmd).await,
                () = &mut timer => {
                    let now = Instant::now();
                    let mut step = Ok(());
                    // Catch up frame by frame if the process was stalled: Twilio
                    // would have sent those frames too.
                    while step.is_ok() && now >= next_frame && !self.hanging_up {
                        step = self.send_frame(next_frame, now).await;
                        next_frame += FRAME;
                    }
                    if self.hanging_up {
                        next_frame = now + FRAME;
                    }
                    if step.is_ok() && !self.hanging_up {
                        step = self.echo_due(now).await;
                    }
                    step
                }
            };
            self.check_waiters(Instant::now());
            if self.opts.record {
                // Only tests poll with `wait_until`, and tests record.
                self.shared.changed.notify_waiters();
            }
            if let Err(exit) = step {
                break exit;
            }
        };
        let now = Instant::now();
        {
            let mut st = self.shared.lock();
            st.frames_sent = self.frames_sent;
            st.max_send_lateness = self.max_lateness;
            if st.closed.is_none() {
                let reason = match exit {
                    Exit::Hangup => "hung up",
                    Exit::Lost => "connection lost",
                };
                st.closed = Some((now, None, reason.into()));
            }
        }
        self.check_waiters(now);
        self.shared.changed.notify_waiters();
    }

    async fn write(&mut self, msg: Message) -> Result<(), Exit> {
        self.ws.send(msg).await.map_err(|_| Exit::Lost)
    }

    fn event(e: TwilioEvent<'_>) -> Message {
        Message::text(e.to_json_sized(256))
    }

    async fn send_frame(&mut self, due: Instant, now: Instant) -> Result<(), Exit> {
        let mut frame = [SILENCE; FRAME_SAMPLES];
        if self.speaking.is_none() {
            self.speaking = self.queue.pop_front().map(|(audio, done)| Speaking {
                audio,
                pos: 0,
                started: None,
                done,
            });
        }
        let mut finished = None;
        if let Some(s) = self.speaking.as_mut() {
            let end = (s.pos + FRAME_SAMPLES).min(s.audio.len());
            frame[..end - s.pos].copy_from_slice(&s.audio[s.pos..end]);
            s.pos = end;
            s.started.get_or_insert(now);
            if s.pos >= s.audio.len() {
                finished = self.speaking.take();
            }
        }
        self.seq += 1;
        self.chunk += 1;
        self.b64.clear();
        STANDARD.encode_string(frame, &mut self.b64);
        let media = TwilioEvent::Media {
            sequence_number: StrNum(self.seq),
            media: MediaBody {
                track: "inbound".into(),
                chunk: StrNum(self.chunk),
                timestamp: StrNum((self.chunk - 1) * 20),
                payload: self.b64.as_str().into(),
            },
            stream_sid: self.opts.stream_sid.as_str().into(),
        };
        let msg = Message::text(media.to_json_sized(400));
        self.write(msg).await?;
        let late = now.saturating_duration_since(due);
        if let Some(r) = &self.opts.recorder {
            r.send_lateness(late);
        }
        self.frames_sent += 1;
        self.max_lateness = self.max_lateness.max(late);
        if let Some(s) = finished {
            let started = s.started.unwrap_or(now);
            let _ = s.done.send(SpeechWindow {
                started,
                ended: now,
            });
        }
        Ok(())
    }

    /// Echoes every mark whose audio has played by `now`.
    async fn echo_due(&mut self, now: Instant) -> Result<(), Exit> {
        if !self.opts.echo_marks {
            return Ok(());
        }
        loop {
            let name = {
                let mut st = self.shared.lock();
                self.next_mark_due = st.pending_marks.front().map(|(_, due)| *due);
                if st.pending_marks.front().is_none_or(|(_, due)| *due > now) {
                    return Ok(());
                }
                let Some((name, _)) = st.pending_marks.pop_front() else {
                    return Ok(());
                };
                st.marks_echoed += 1;
                st.log(Event::Echoed {
                    at: now,
                    name: name.clone(),
                });
                name
            };
            self.seq += 1;
            let echo = TwilioEvent::Mark {
                sequence_number: StrNum(self.seq),
                stream_sid: self.opts.stream_sid.as_str().into(),
                mark: MarkBody {
                    name: name.as_str().into(),
                },
            };
            let msg = Self::event(echo);
            self.write(msg).await?;
        }
    }

    async fn on_control(&mut self, cmd: Option<Control>) -> Result<(), Exit> {
        let Some(cmd) = cmd else {
            return Err(Exit::Hangup);
        };
        match cmd {
            Control::Speak(audio, done) => self.queue.push_back((audio, done)),
            Control::Raw(m) => self.write(m).await?,
            Control::Wait(cond, tx) => self.waiters.push((cond, tx)),
            Control::Dtmf(d) => {
                self.seq += 1;
                let digit = d.to_string();
                let dtmf = TwilioEvent::Dtmf {
                    stream_sid: self.opts.stream_sid.as_str().into(),
                    sequence_number: StrNum(self.seq),
                    dtmf: DtmfBody {
                        track: "inbound_track".into(),
                        digit: digit.as_str().into(),
                    },
                };
                let msg = Self::event(dtmf);
                self.write(msg).await?;
            }
            Control::Hangup => {
                self.seq += 1;
                let stop = TwilioEvent::Stop {
                    sequence_number: StrNum(self.seq),
                    stop: StopBody {
                        account_sid: self.opts.account_sid.as_str().into(),
                        call_sid: self.opts.call_sid.as_str().into(),
                    },
                    stream_sid: self.opts.stream_sid.as_str().into(),
                };
                let msg = Self::event(stop);
                self.write(msg).await?;
                // Like Twilio: start the close handshake, then read until the
                // server completes it (its close frame says how the call ended).
                self.hanging_up = true;
                if self.ws.close(None).await.is_err() {
                    return Err(Exit::Hangup);
                }
            }
        }
        Ok(())
    }

    async fn on_server(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), Exit> {
        let now = Instant::now();
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                    .unwrap_or((None, String::new()));
                let mut st = self.shared.lock();
                st.closed = Some((now, code, reason.clone()));
                st.log(Event::Closed {
                    at: now,
                    code,
                    reason,
                });
                return Err(Exit::Lost);
            }
            Some(Ok(Message::Binary(_))) => {
                self.shared
                    .lock()
                    .protocol_error("binary message from the server".into());
                return Ok(());
            }
            Some(Ok(_)) => return Ok(()),
            None | Some(Err(_)) if self.hanging_up => return Err(Exit::Hangup),
            None | Some(Err(_)) => return Err(Exit::Lost),
        };
        let clear = {
            let mut st = self.shared.lock();
            match HarkMessage::parse(text.as_str()) {
                Ok(HarkMessage::Media { media, .. }) => {
                    self.decoded.clear();
                    if STANDARD
                        .decode_vec(media.payload.as_bytes(), &mut self.decoded)
                        .is_err()
                    {
                        st.protocol_error("media payload is not base64".into());
                    }
                    let bytes = self.decoded.len();
                    let play_from = st.playback_end.max(now);
                    st.playback_end = play_from + Duration::from_micros(bytes as u64 * 125);
                    st.media_frames += 1;
                    st.media_bytes += bytes as u64;
                    st.last_media_at = Some(now);
                    if let Some((_, pending)) = st.after_clear.as_mut() {
                        *pending += 1;
                    }
                    st.log(Event::Media { at: now, bytes });
                    false
                }
                Ok(HarkMessage::Mark { mark, .. }) => {
                    let name = mark.name.into_owned();
                    st.marks_received += 1;
                    if let Some(id) = Checkpoint::parse(&name) {
                        if let Some((cancelled, pending)) = st.after_clear {
                            if id.turn <= cancelled {
                                st.stale_frames += pending;
                                st.after_clear = Some((cancelled, 0));
                            } else {
                                st.after_clear = None;
                            }
                        }
                        st.newest_generation = st.newest_generation.max(id.turn);
                    }
                    let due = st.playback_end.max(now);
                    st.pending_marks.push_back((name.clone(), due));
                    self.next_mark_due.get_or_insert(due);
                    st.log(Event::Mark { at: now, name });
                    false
                }
                Ok(HarkMessage::Clear { .. }) => {
                    st.clears.push(now);
                    st.playback_end = now;
                    st.after_clear = Some((st.newest_generation, 0));
                    st.log(Event::Clear { at: now });
                    // Twilio returns every pending mark at once on clear.
                    for (_, due) in st.pending_marks.iter_mut() {
                        *due = now;
                    }
                    if !st.pending_marks.is_empty() {
                        self.next_mark_due = Some(now);
                    }
                    true
                }
                Err(e) => {
                    let sample: String = text.as_str().chars().take(80).collect();
                    st.protocol_error(format!("{e}: {sample}"));
                    false
                }
            }
        };
        if clear {
            self.echo_due(now).await?;
        }
        Ok(())
    }

    fn check_waiters(&mut self, now: Instant) {
        if self.waiters.is_empty() {
            return;
        }
        let st = self.shared.lock();
        let mut i = 0;
        while i < self.waiters.len() {
            let hit = st.satisfied(&self.waiters[i].0, now);
            let gone = self.waiters[i].1.is_closed();
            match hit {
                Some(at) => {
                    let (_, tx) = self.waiters.swap_remove(i);
                    let _ = tx.send(at);
                }
                None if gone => {
                    self.waiters.swap_remove(i);
                }
                None => i += 1,
            }
        }
    }
}
