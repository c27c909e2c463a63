//! Running TwiML on a call: parsed (roxmltree) into verbs, then carried out
//! one by one as Twilio does. A document that runs out ends the call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hark_loadtest::{Caller, CallerOptions};

use super::{Conference, Core, Participant, lock, sign};

#[derive(Debug)]
enum Verb {
    Say(String),
    Pause(u64),
    Stream {
        url: String,
        params: BTreeMap<String, String>,
        /// `<Connect action>`: requested when the stream ends.
        action: Option<String>,
    },
    DialTo(String),
    Conference {
        room: String,
        start_on_enter: bool,
        end_on_exit: bool,
        wait_url: Option<String>,
        /// `record="record-from-start"`: its `recordingStatusCallback`.
        recording_callback: Option<String>,
    },
    Gather {
        says: Vec<String>,
        timeout: u64,
        action: String,
        on_empty: bool,
    },
    Hangup,
    Reject,
}

fn parse(xml: &str) -> Result<Vec<Verb>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err("the root is not <Response>".into());
    }
    let text = |n: roxmltree::Node| n.text().unwrap_or("").trim().to_owned();
    let mut verbs = Vec::new();
    for v in root.children().filter(|n| n.is_element()) {
        match v.tag_name().name() {
            "Say" => verbs.push(Verb::Say(text(v))),
            "Pause" => verbs.push(Verb::Pause(
                v.attribute("length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(1),
            )),
            "Connect" => {
                let s = v
                    .children()
                    .find(|n| n.has_tag_name("Stream"))
                    .ok_or("<Connect> without <Stream>")?;
                let params = s
                    .children()
                    .filter(|n| n.has_tag_name("Parameter"))
                    .map(|p| {
                        (
                            p.attribute("name").unwrap_or("").to_owned(),
                            p.attribute("value").unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                verbs.push(Verb::Stream {
                    url: s.attribute("url").ok_or("<Stream> without url")?.to_owned(),
                    params,
                    action: v.attribute("action").map(str::to_owned),
                });
            }
            "Dial" => {
                let noun = v.children().find(|n| n.is_element());
                match noun {
                    Some(n) if n.has_tag_name("Conference") => verbs.push(Verb::Conference {
                        room: text(n),
                        start_on_enter: n.attribute("startConferenceOnEnter") != Some("false"),
                        end_on_exit: n.attribute("endConferenceOnExit") == Some("true"),
                        wait_url: n.attribute("waitUrl").map(str::to_owned),
                        recording_callback: (n.attribute("record") == Some("record-from-start"))
                            .then(|| {
                                n.attribute("recordingStatusCallback")
                                    .unwrap_or("")
                                    .to_owned()
                            }),
                    }),
                    Some(n) if n.has_tag_name("Number") || n.has_tag_name("Sip") => {
                        verbs.push(Verb::DialTo(text(n)))
                    }
                    _ => verbs.push(Verb::DialTo(text(v))),
                }
            }
            "Gather" => verbs.push(Verb::Gather {
                says: v
                    .children()
                    .filter(|n| n.has_tag_name("Say"))
                    .map(text)
                    .collect(),
                timeout: v
                    .attribute("timeout")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(5),
                action: v.attribute("action").unwrap_or("").to_owned(),
                on_empty: v.attribute("actionOnEmptyResult") == Some("true"),
            }),
            "Hangup" => verbs.push(Verb::Hangup),
            "Reject" => verbs.push(Verb::Reject),
            other => return Err(format!("unknown verb <{other}>")),
        }
    }
    Ok(verbs)
}

enum Next {
    /// The document ran out: the call ends.
    Done,
    /// The call was ended by a verb.
    Over,
    /// A `<Gather>` action answered with this document.
    Doc(String),
}

pub async fn run(core: Arc<Core>, sid: String, mut xml: String) {
    loop {
        let verbs = match parse(&xml) {
            Ok(v) => v,
            Err(e) => {
                // Twilio says "an application error has occurred" and hangs up.
                core.log(format!("bad TwiML for {sid}: {e}: {xml}"));
                return Core::complete(&core, &sid, "failed").await;
            }
        };
        match execute(&core, &sid, verbs).await {
            Next::Done => return Core::complete(&core, &sid, "completed").await,
            Next::Over => return,
            Next::Doc(next) => xml = next,
        }
    }
}

fn heard(core: &Core, sid: &str, what: String) {
    if let Some(c) = lock(&core.calls).get_mut(sid) {
        c.heard.push(what);
    }
}

async fn execute(core: &Arc<Core>, sid: &str, verbs: Vec<Verb>) -> Next {
    for verb in verbs {
        match verb {
            Verb::Say(text) => {
                heard(core, sid, text);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Verb::Pause(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            Verb::Stream {
                url,
                params,
                action,
            } => {
                stream(core, sid, url, params).await;
                // The stream ended: with an action, its answer is what
                // happens next (the call already over stays over).
                let over = core.with_call(sid, |c| {
                    ["completed", "busy", "failed", "no-answer", "canceled"]
                        .contains(&c.status.as_str())
                }) != Some(false);
                if let (Some(action), false) = (action, over) {
                    return match core.fetch_twiml(sid, &action, &[]).await {
                        Ok(next) => Next::Doc(next),
                        Err(e) => {
                            core.log(format!("connect action failed: {e}"));
                            Core::complete(core, sid, "failed").await;
                            Next::Over
                        }
                    };
                }
            }
            Verb::DialTo(to) => {
                if let Some(c) = lock(&core.calls).get_mut(sid) {
                    c.bridged_to = Some(to);
                }
                // With the other party until someone hangs up.
                std::future::pending::<()>().await;
            }
            Verb::Conference {
                room,
                start_on_enter,
                end_on_exit,
                wait_url,
                recording_callback,
            } => {
                let how = Join {
                    start_on_enter,
                    end_on_exit,
                    wait_url,
                    recording_callback,
                };
                conference(core, sid, room, how).await
            }
            Verb::Gather {
                says,
                timeout,
                action,
                on_empty,
            } => {
                for s in says {
                    heard(core, sid, s);
                }
                let press = core.with_call(sid, |c| c.press).flatten();
                let digits = match press {
                    Some(d) => d.to_string(),
                    None => {
                        tokio::time::sleep(Duration::from_secs(timeout)).await;
                        if !on_empty {
                            continue;
                        }
                        String::new()
                    }
                };
                return match core.fetch_twiml(sid, &action, &[("Digits", &digits)]).await {
                    Ok(next) => Next::Doc(next),
                    Err(e) => {
                        core.log(format!("gather action failed: {e}"));
                        Core::complete(core, sid, "failed").await;
                        Next::Over
                    }
                };
            }
            Verb::Hangup => {
                Core::complete(core, sid, "completed").await;
                return Next::Over;
            }
            Verb::Reject => {
                Core::complete(core, sid, "busy").await;
                return Next::Over;
            }
        }
    }
    Next::Done
}

/// `<Connect><Stream>`: a Media Stream into Hark with a scripted caller, for
/// as long as Hark keeps it open.
async fn stream(core: &Arc<Core>, sid: &str, url: String, params: BTreeMap<String, String>) {
    let stream_sid = core.new_sid("MZ");
    let opts = CallerOptions {
        url: url.clone(),
        account_sid: core.account.clone(),
        call_sid: sid.to_owned(),
        stream_sid: stream_sid.clone(),
        custom_parameters: params,
        headers: vec![
            ("X-Twilio-Signature".into(), sign(&core.token, &url, &[])),
            ("X-Forwarded-Proto".into(), "http".into()),
        ],
        echo_marks: true,
        record: true,
        recorder: None,
    };
    let caller = match Caller::connect(opts).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            core.log(format!("stream for {sid} failed: {e}"));
            return;
        }
    };
    if let Some(c) = lock(&core.calls).get_mut(sid) {
        c.streams.push(Arc::clone(&caller));
        c.stream_sids.push(stream_sid);
    }
    // Hark ends the stream (closes the socket) when it is done with the call.
    let _ = caller.wait_closed(Duration::from_secs(3600)).await;
}

struct Join {
    start_on_enter: bool,
    end_on_exit: bool,
    wait_url: Option<String>,
    recording_callback: Option<String>,
}

/// `<Dial><Conference>`: in the room until this call leaves or it ends.
async fn conference(core: &Arc<Core>, sid: &str, room: String, how: Join) {
    let Join {
        start_on_enter,
        end_on_exit,
        wait_url,
        recording_callback,
    } = how;
    let started = {
        let mut confs = lock(&core.conferences);
        let conf = match confs.iter_mut().find(|c| c.name == room && !c.ended) {
            Some(c) => c,
            None => {
                confs.push(Conference {
                    sid: core.new_sid("CF"),
                    name: room.clone(),
                    recording_callback: None,
                    created: tokio::time::Instant::now(),
                    started: false,
                    ended: false,
                    participants: Vec::new(),
                    members: Vec::new(),
                });
                confs.last_mut().expect("just pushed")
            }
        };
        conf.participants.push(Participant {
            call_sid: sid.to_owned(),
            start_on_enter,
            end_on_exit,
            hold: false,
        });
        conf.members.push(sid.to_owned());
        if recording_callback.is_some() {
            conf.recording_callback = recording_callback;
        }
        conf.started |= start_on_enter;
        conf.started
    };
    if started {
        heard(core, sid, format!("joined:{room}"));
    } else {
        heard(
            core,
            sid,
            format!(
                "wait:{}",
                wait_url.as_deref().unwrap_or("default hold music")
            ),
        );
    }
    let mut was_started = started;
    loop {
        let (inside, started) = {
            let confs = lock(&core.conferences);
            let conf = confs.iter().rev().find(|c| c.name == room);
            (
                conf.is_some_and(|c| !c.ended && c.participants.iter().any(|p| p.call_sid == sid)),
                conf.is_some_and(|c| c.started),
            )
        };
        if !inside {
            return;
        }
        if started && !was_started {
            was_started = true;
            heard(core, sid, format!("joined:{room}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
