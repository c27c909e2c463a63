//! A Twilio that behaves like Twilio, for the transfer tests (and `hark
//! doctor`'s account check):
//!
//! - the REST API (`/2010-04-01/Accounts/{AccountSid}/…`, HTTP basic auth
//!   with the account SID and auth token): the account; `Calls.json`
//!   create (`To`, `From`, `Url`, `StatusCallback`, `StatusCallbackEvent`,
//!   `Timeout`; 201); `Calls/{Sid}.json` update (`Url`, `Twiml`,
//!   `Status=completed`; 404 with Twilio's error JSON for an unknown call);
//!   `Conferences.json` (`FriendlyName`, `Status`); `Participants/{CallSid}.json`
//!   update (`Hold`) and delete (204);
//! - calls that run TwiML ([`twiml`]): `<Connect><Stream>` opens a Media
//!   Stream into Hark with a scripted caller (`hark_loadtest::Caller`),
//!   `<Say>`, `<Gather>` (the phone's scripted key), `<Dial>` to a number,
//!   SIP address or conference, `<Hangup>`, `<Reject>`; a call redirected
//!   (updated with `Url` or `Twiml`) gets `stop` on its stream first;
//! - conferences: a participant who does not start it hears the wait
//!   audio until one who does joins; then everyone hears everyone; one
//!   with `endConferenceOnExit` ends it for all;
//! - webhooks and status callbacks signed with `X-Twilio-Signature`
//!   (HMAC-SHA1 of the URL and the sorted form fields, base64), written here
//!   apart from Hark's own code. Requests go over plain HTTP with
//!   `X-Forwarded-Proto: http`, as through a TLS-terminating proxy.
//!
//! Phones the fake can dial are scripted ([`Phone`]): answer after a
//! while and press a key (or none), never answer, be busy, or be a lead —
//! a person, or a machine whose greeting and beep play into the stream —
//! with the answering-machine verdicts Twilio's asynchronous detection
//! would report (`AnsweredBy` to `AsyncAmdStatusCallback`, signed).

mod rest;
mod twiml;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use hark_loadtest::Caller;
use hmac::{Hmac, KeyInit, Mac};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Server;

/// What a number the fake can call does.
#[derive(Debug, Clone)]
pub enum Phone {
    /// Picks up after `after`; at a `<Gather>`, presses `press` (or nothing).
    Answer {
        after: Duration,
        press: Option<char>,
    },
    /// Rings until the dialer's `Timeout`.
    NoAnswer,
    Busy,
    /// Picks up after `after` and, from its stream's start, plays `plays`
    /// (μ-law: a voicemail greeting and its beep) into it. When the call was
    /// placed with `MachineDetection` and `AsyncAmdStatusCallback`, each
    /// verdict is reported (signed) that long after the answer.
    Lead {
        after: Duration,
        plays: Option<&'static [u8]>,
        verdicts: Vec<(Duration, &'static str)>,
    },
}

/// One call as the fake keeps it.
pub struct Call {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub direction: &'static str,
    pub status: String,
    status_callback: Option<String>,
    /// `StatusCallbackEvent`s asked for (`initiated`, `ringing`, `answered`, `completed`).
    events: Vec<String>,
    callback_seq: u32,
    /// Everything said to this call (`<Say>`), and `wait:` / `joined:`
    /// notes of what it heard in a conference.
    pub heard: Vec<String>,
    /// `<Dial><Number>` / `<Sip>`: where the call went.
    pub bridged_to: Option<String>,
    /// Media Streams opened for this call, oldest first.
    pub streams: Vec<Arc<Caller>>,
    /// Stream SIDs of `streams`.
    pub stream_sids: Vec<String>,
    /// The key this call's phone presses at a `<Gather>`.
    press: Option<char>,
    runner: Option<AbortHandle>,
    pub created: Instant,
}

pub struct Participant {
    pub call_sid: String,
    pub start_on_enter: bool,
    pub end_on_exit: bool,
    pub hold: bool,
}

pub struct Conference {
    pub sid: String,
    pub name: String,
    /// `record="record-from-start"`: where its recording is reported.
    pub recording_callback: Option<String>,
    pub created: Instant,
    /// Someone who starts it has joined.
    pub started: bool,
    pub ended: bool,
    pub participants: Vec<Participant>,
    /// Every call that was ever in it.
    pub members: Vec<String>,
}

pub struct Core {
    pub account: String,
    pub token: String,
    pub http: reqwest::Client,
    hark: Mutex<Option<String>>,
    calls: Mutex<BTreeMap<String, Call>>,
    conferences: Mutex<Vec<Conference>>,
    phones: Mutex<BTreeMap<String, Phone>>,
    /// `METHOD path field=value…` of every REST request, in order.
    requests: Mutex<Vec<String>>,
    next: AtomicU64,
}

pub struct Twilio {
    server: Server,
    pub core: Arc<Core>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Twilio's request signature, as its docs describe it.
pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Twilio {
    pub async fn start(sid: &str, token: &str) -> Self {
        let core = Arc::new(Core {
            account: sid.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
            hark: Mutex::new(None),
            calls: Mutex::new(BTreeMap::new()),
            conferences: Mutex::new(Vec::new()),
            phones: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/2010-04-01/Accounts/{file}", get(rest::account_json))
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(rest::create_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{file}",
                post(rest::update_call).get(rest::fetch_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Conferences.json",
                get(rest::conferences),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{file}",
                post(rest::participant_update).delete(rest::participant_remove),
            )
            .with_state(Arc::clone(&core));
        Self {
            server: Server::start(router).await,
            core,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Where the account's number sends its calls: Hark at `base`
    /// (`http://127.0.0.1:PORT`), voice and status webhooks.
    pub fn point_at(&self, base: &str) {
        *lock(&self.core.hark) = Some(base.to_owned());
    }

    pub fn phone(&self, number: &str, phone: Phone) {
        lock(&self.core.phones).insert(number.to_owned(), phone);
    }

    /// A call to the account's number `to` from `from`: Hark's voice
    /// webhook is asked what to do, and the call runs its answer.
    pub async fn incoming(&self, from: &str, to: &str) -> String {
        let base = lock(&self.core.hark).clone().expect("point_at first");
        let sid = self.core.new_sid("CA");
        self.core.add_call(Call {
            sid: sid.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            direction: "inbound",
            status: "ringing".into(),
            status_callback: Some(format!("{base}/twilio/status")),
            events: vec!["completed".into()],
            callback_seq: 0,
            heard: Vec::new(),
            bridged_to: None,
            streams: Vec::new(),
            stream_sids: Vec::new(),
            press: None,
            runner: None,
            created: Instant::now(),
        });
        let xml = self
            .core
            .fetch_twiml(&sid, &format!("{base}/twilio/voice"), &[])
            .await
            .expect("the voice webhook answers");
        self.core.set_status(&sid, "in-progress").await;
        Core::run(&self.core, &sid, xml);
        sid
    }

    /// The call's stream number `n` (0: its first), once open.
    pub async fn stream(&self, sid: &str, n: usize, limit: Duration) -> Option<Arc<Caller>> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self
                .core
                .with_call(sid, |c| c.streams.get(n).cloned())
                .flatten()
            {
                return Some(s);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `pred` holds for the call.
    pub async fn wait_call(
        &self,
        sid: &str,
        limit: Duration,
        pred: impl Fn(&Call) -> bool,
    ) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.core.with_call(sid, |c| pred(c)) == Some(true) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn call<T>(&self, sid: &str, f: impl FnOnce(&Call) -> T) -> Option<T> {
        self.core.with_call(sid, f)
    }

    /// Calls the fake placed (outbound), oldest first.
    pub fn dialed(&self) -> Vec<String> {
        lock(&self.core.calls)
            .values()
            .filter(|c| c.direction == "outbound-api")
            .map(|c| (c.created, c.sid.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    pub fn conference<T>(&self, name: &str, f: impl FnOnce(&Conference) -> T) -> Option<T> {
        lock(&self.core.conferences)
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(f)
    }

    pub fn requests(&self) -> Vec<String> {
        lock(&self.core.requests).clone()
    }

    /// Hangs the call up, as a caller or agent putting the phone down.
    pub async fn hang_up(&self, sid: &str) {
        Core::complete(&self.core, sid, "completed").await;
    }
}

impl Core {
    fn new_sid(&self, prefix: &str) -> String {
        format!(
            "{prefix}{:032x}",
            0xf00_0000 + self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn add_call(&self, call: Call) {
        lock(&self.calls).insert(call.sid.clone(), call);
    }

    fn with_call<T>(&self, sid: &str, f: impl FnOnce(&Call) -> T) -> Option<T> {
        lock(&self.calls).get(sid).map(f)
    }

    fn log(&self, line: String) {
        lock(&self.requests).push(line);
    }

    /// A signed form POST, as Twilio makes it; the body on 2xx.
    pub async fn post_signed(
        &self,
        url: &str,
        params: &[(String, String)],
    ) -> Result<String, String> {
        let sig = sign(&self.token, url, params);
        let res = self
            .http
            .post(url)
            .header("X-Twilio-Signature", sig)
            .header("X-Forwarded-Proto", "http")
            .form(params)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("HTTP {status}: {body}"))
        }
    }

    fn call_params(&self, sid: &str) -> Vec<(String, String)> {
        self.with_call(sid, |c| {
            vec![
                ("AccountSid".to_owned(), self.account.clone()),
                ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
                ("CallSid".to_owned(), c.sid.clone()),
                ("CallStatus".to_owned(), c.status.clone()),
                ("Direction".to_owned(), c.direction.to_owned()),
                ("From".to_owned(), c.from.clone()),
                ("To".to_owned(), c.to.clone()),
            ]
        })
        .unwrap_or_default()
    }

    /// Asks `url` what the call should do (the call's fields, and `extra`).
    async fn fetch_twiml(
        &self,
        sid: &str,
        url: &str,
        extra: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut params = self.call_params(sid);
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.post_signed(url, &params).await
    }

    /// Runs `xml` on the call, replacing what it ran before.
    fn run(core: &Arc<Core>, sid: &str, xml: String) {
        let task = tokio::spawn(twiml::run(Arc::clone(core), sid.to_owned(), xml));
        let mut calls = lock(&core.calls);
        if let Some(call) = calls.get_mut(sid)
            && let Some(old) = call.runner.replace(task.abort_handle())
            && Some(old.id()) != tokio::task::try_id()
        {
            old.abort();
        }
    }

    /// Stops what the call is running: its stream gets `stop`, and it
    /// leaves any conference (as Twilio does on a redirect).
    fn interrupt(&self, sid: &str) {
        let stream = {
            let mut calls = lock(&self.calls);
            let Some(call) = calls.get_mut(sid) else {
                return;
            };
            if let Some(old) = call.runner.take() {
                // Not the runner itself (its TwiML ended the call): it goes on to report.
                if Some(old.id()) != tokio::task::try_id() {
                    old.abort();
                }
            }
            call.streams.last().cloned()
        };
        if let Some(stream) = stream {
            stream.hangup();
        }
        self.leave_conference(sid);
    }

    fn leave_conference(&self, sid: &str) {
        let mut ended = Vec::new();
        let mut confs = lock(&self.conferences);
        for conf in confs.iter_mut().filter(|c| !c.ended) {
            let Some(i) = conf.participants.iter().position(|p| p.call_sid == sid) else {
                continue;
            };
            let p = conf.participants.remove(i);
            if p.end_on_exit || conf.participants.is_empty() {
                conf.ended = true;
                conf.participants.clear();
                if let Some(url) = &conf.recording_callback {
                    ended.push((
                        url.clone(),
                        conf.sid.clone(),
                        conf.created.elapsed().as_secs(),
                    ));
                }
            }
        }
        drop(confs);
        // A recorded conference that ended: its recording is reported, signed.
        for (url, conference, secs) in ended {
            let params: Vec<(String, String)> = [
                ("AccountSid", self.account.clone()),
                ("ConferenceSid", conference),
                ("RecordingSid", self.new_sid("RE")),
                (
                    "RecordingUrl",
                    format!(
                        "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/RE1",
                        self.account
                    ),
                ),
                ("RecordingStatus", "completed".into()),
                ("RecordingDuration", secs.to_string()),
                ("RecordingChannels", "1".into()),
                ("RecordingSource", "DialConference".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let (http, token) = (self.http.clone(), self.token.clone());
            tokio::spawn(async move {
                let _ = http
                    .post(&url)
                    .header("X-Twilio-Signature", sign(&token, &url, &params))
                    .header("X-Forwarded-Proto", "http")
                    .form(&params)
                    .send()
                    .await;
            });
        }
    }

    /// The call's status changed: recorded and, if asked for, called back.
    async fn set_status(&self, sid: &str, status: &str) {
        let (url, event, seq) = {
            let mut calls = lock(&self.calls);
            let Some(call) = calls.get_mut(sid) else {
                return;
            };
            call.status = status.to_owned();
            let event = match status {
                "queued" | "initiated" => "initiated",
                "ringing" => "ringing",
                "in-progress" => "answered",
                _ => "completed",
            };
            if !call.events.iter().any(|e| e == event) {
                return;
            }
            let Some(url) = call.status_callback.clone() else {
                return;
            };
            let seq = call.callback_seq;
            call.callback_seq += 1;
            (url, event, seq)
        };
        let mut params = self.call_params(sid);
        params.push(("SequenceNumber".into(), seq.to_string()));
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        if event == "completed" {
            let secs = self
                .with_call(sid, |c| c.created.elapsed().as_secs())
                .unwrap_or(0);
            params.push(("CallDuration".into(), secs.to_string()));
        }
        if let Err(e) = self.post_signed(&url, &params).await {
            self.log(format!("callback to {url} failed: {e}"));
        }
    }

    /// The call is over with `status` (`completed`, `busy`, `no-answer`…).
    async fn complete(core: &Arc<Core>, sid: &str, status: &str) {
        let already = core
            .with_call(sid, |c| {
                ["completed", "busy", "no-answer", "failed", "canceled"]
                    .contains(&c.status.as_str())
            })
            .unwrap_or(true);
        if already {
            return;
        }
        core.interrupt(sid);
        core.set_status(sid, status).await;
    }
}
