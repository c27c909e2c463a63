//! The fake's REST API, as Twilio documents it: basic auth, form bodies,
//! JSON answers (201 on create, 204 on delete, 404 with `code`/`message`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::time::Instant;

use super::{Call, Core, Phone, lock};

fn authorized(core: &Core, headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", core.account, core.token))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
}

fn call_json(core: &Core, c: &Call) -> serde_json::Value {
    json!({
        "sid": c.sid,
        "account_sid": core.account,
        "to": c.to,
        "from": c.from,
        "status": c.status,
        "direction": c.direction,
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{}/Calls/{}.json", core.account, c.sid),
    })
}

pub async fn account_json(
    State(core): State<Arc<Core>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let sid = file.strip_suffix(".json").unwrap_or(&file);
    if !authorized(&core, &headers) || sid != core.account {
        return unauthorized();
    }
    axum::Json(json!({
        "sid": core.account,
        "friendly_name": "Hark tests",
        "status": "active",
        "type": "Full",
        "owner_account_sid": core.account,
        "date_created": "Sat, 21 Nov 2026 00:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{}.json", core.account),
    }))
    .into_response()
}

/// `POST Calls.json`: places a call to a scripted phone.
pub async fn create_call(
    State(core): State<Arc<Core>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    core.log(format!(
        "POST Calls.json To={} Url={} MachineDetection={}",
        get("To"),
        get("Url"),
        get("MachineDetection")
    ));
    let (to, from, url) = (get("To"), get("From"), get("Url"));
    if to.is_empty() || from.is_empty() || url.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            21201,
            "To, From and Url are required",
        );
    }
    let timeout = get("Timeout").parse::<u64>().unwrap_or(60).clamp(5, 600);
    let status_callback = Some(get("StatusCallback")).filter(|s| !s.is_empty());
    let mut events: Vec<String> = form
        .iter()
        .filter(|(n, _)| n == "StatusCallbackEvent")
        .map(|(_, v)| v.clone())
        .collect();
    if events.is_empty() {
        events.push("completed".into());
    }
    let phone = lock(&core.phones).get(&to).cloned();
    // Asynchronous answering-machine detection, as Twilio takes it.
    let amd_url = Some(get("AsyncAmdStatusCallback")).filter(|u| {
        !u.is_empty() && !get("MachineDetection").is_empty() && get("AsyncAmd") == "true"
    });
    let sid = core.new_sid("CA");
    let press = match &phone {
        Some(Phone::Answer { press, .. }) => *press,
        _ => None,
    };
    let call = Call {
        sid: sid.clone(),
        from,
        to,
        direction: "outbound-api",
        status: "queued".into(),
        status_callback,
        events,
        callback_seq: 0,
        heard: Vec::new(),
        bridged_to: None,
        streams: Vec::new(),
        stream_sids: Vec::new(),
        press,
        runner: None,
        created: Instant::now(),
    };
    let body = call_json(&core, &call);
    core.add_call(call);
    let dialer = Arc::clone(&core);
    let placed = sid.clone();
    let task = tokio::spawn(async move {
        let core = dialer;
        let sid = placed;
        core.set_status(&sid, "initiated").await;
        match phone {
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Core::complete(&core, &sid, "failed").await;
            }
            Some(Phone::Busy) => {
                core.set_status(&sid, "ringing").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Core::complete(&core, &sid, "busy").await;
            }
            Some(Phone::NoAnswer) => {
                core.set_status(&sid, "ringing").await;
                tokio::time::sleep(Duration::from_secs(timeout)).await;
                Core::complete(&core, &sid, "no-answer").await;
            }
            Some(Phone::Lead {
                after,
                plays,
                verdicts,
            }) => {
                core.set_status(&sid, "ringing").await;
                if after >= Duration::from_secs(timeout) {
                    tokio::time::sleep(Duration::from_secs(timeout)).await;
                    return Core::complete(&core, &sid, "no-answer").await;
                }
                tokio::time::sleep(after).await;
                core.set_status(&sid, "in-progress").await;
                if let Some(url) = amd_url {
                    tokio::spawn(report_verdicts(
                        Arc::clone(&core),
                        sid.clone(),
                        url,
                        verdicts,
                    ));
                }
                if let Some(audio) = plays {
                    tokio::spawn(play_into_stream(Arc::clone(&core), sid.clone(), audio));
                }
                match core.fetch_twiml(&sid, &url, &[]).await {
                    Ok(xml) => Core::run(&core, &sid, xml),
                    Err(e) => {
                        core.log(format!("answer url failed: {e}"));
                        Core::complete(&core, &sid, "failed").await;
                    }
                }
            }
            Some(Phone::Answer { after, .. }) => {
                core.set_status(&sid, "ringing").await;
                if after >= Duration::from_secs(timeout) {
                    tokio::time::sleep(Duration::from_secs(timeout)).await;
                    return Core::complete(&core, &sid, "no-answer").await;
                }
                tokio::time::sleep(after).await;
                core.set_status(&sid, "in-progress").await;
                match core.fetch_twiml(&sid, &url, &[]).await {
                    Ok(xml) => Core::run(&core, &sid, xml),
                    Err(e) => {
                        core.log(format!("answer url failed: {e}"));
                        Core::complete(&core, &sid, "failed").await;
                    }
                }
            }
        }
    });
    if let Some(call) = lock(&core.calls).get_mut(&sid) {
        call.runner = Some(task.abort_handle());
    }
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// `AnsweredBy` verdicts, each `at` after the answer, signed like every callback.
async fn report_verdicts(
    core: Arc<Core>,
    sid: String,
    url: String,
    verdicts: Vec<(Duration, &'static str)>,
) {
    let answered = Instant::now();
    for (at, verdict) in verdicts {
        tokio::time::sleep_until(answered + at).await;
        let params: Vec<(String, String)> = [
            ("AccountSid", core.account.clone()),
            ("CallSid", sid.clone()),
            ("AnsweredBy", verdict.to_owned()),
            ("MachineDetectionDuration", at.as_millis().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Err(e) = core.post_signed(&url, &params).await {
            core.log(format!("AMD callback to {url} failed: {e}"));
        }
    }
}

/// What the callee's end plays into the call's first stream, once it opens.
async fn play_into_stream(core: Arc<Core>, sid: String, audio: &'static [u8]) {
    for _ in 0..500 {
        if let Some(stream) = core
            .with_call(&sid, |c| c.streams.first().cloned())
            .flatten()
        {
            let _ = stream.say(audio).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn fetch_call(
    State(core): State<Arc<Core>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file);
    match core.with_call(sid, |c| call_json(&core, c)) {
        Some(body) => axum::Json(body).into_response(),
        None => not_found(),
    }
}

/// `POST Calls/{Sid}.json`: `Status=completed` ends it; `Twiml` or `Url`
/// replace what it runs (its stream gets `stop` first).
pub async fn update_call(
    State(core): State<Arc<Core>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file).to_owned();
    let fields: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    core.log(format!("POST Calls/{sid}.json {}", fields.join(" ")));
    let live = core.with_call(&sid, |c| {
        !["completed", "busy", "no-answer", "failed", "canceled"].contains(&c.status.as_str())
    });
    match live {
        None => return not_found(),
        Some(false) => {
            return error(
                StatusCode::BAD_REQUEST,
                21220,
                "Call is not in-progress. Cannot redirect.",
            );
        }
        Some(true) => {}
    }
    if let Some(status) = form.get("Status") {
        Core::complete(
            &core,
            &sid,
            if status == "canceled" {
                "canceled"
            } else {
                "completed"
            },
        )
        .await;
    } else if let Some(xml) = form.get("Twiml") {
        core.interrupt(&sid);
        Core::run(&core, &sid, xml.clone());
    } else if let Some(url) = form.get("Url") {
        core.interrupt(&sid);
        let fetcher = Arc::clone(&core);
        let (sid2, url) = (sid.clone(), url.clone());
        tokio::spawn(async move {
            match fetcher.fetch_twiml(&sid2, &url, &[]).await {
                Ok(xml) => Core::run(&fetcher, &sid2, xml),
                Err(e) => {
                    fetcher.log(format!("redirect url failed: {e}"));
                    Core::complete(&fetcher, &sid2, "failed").await;
                }
            }
        });
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            21218,
            "Url, Twiml or Status is required",
        );
    }
    match core.with_call(&sid, |c| call_json(&core, c)) {
        Some(body) => axum::Json(body).into_response(),
        None => not_found(),
    }
}

/// `GET Conferences.json?FriendlyName=…&Status=…`.
pub async fn conferences(
    State(core): State<Arc<Core>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let list: Vec<serde_json::Value> = lock(&core.conferences)
        .iter()
        .filter(|c| q.get("FriendlyName").is_none_or(|n| *n == c.name))
        .map(|c| {
            let status = if c.ended {
                "completed"
            } else if c.started {
                "in-progress"
            } else {
                "init"
            };
            (c, status)
        })
        .filter(|(_, status)| q.get("Status").is_none_or(|s| s == status))
        .map(|(c, status)| json!({"sid": c.sid, "friendly_name": c.name, "status": status}))
        .collect();
    axum::Json(json!({ "conferences": list })).into_response()
}

fn participant_path(file: &str) -> &str {
    file.strip_suffix(".json").unwrap_or(file)
}

pub async fn participant_update(
    State(core): State<Arc<Core>>,
    Path((account, conference, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let call = participant_path(&file);
    let mut confs = lock(&core.conferences);
    let Some(p) = confs
        .iter_mut()
        .filter(|c| c.sid == conference)
        .flat_map(|c| c.participants.iter_mut())
        .find(|p| p.call_sid == call)
    else {
        return not_found();
    };
    if let Some(hold) = form.get("Hold") {
        p.hold = hold == "true";
    }
    axum::Json(json!({"call_sid": call, "conference_sid": conference, "hold": p.hold}))
        .into_response()
}

pub async fn participant_remove(
    State(core): State<Arc<Core>>,
    Path((account, conference, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&core, &headers) || account != core.account {
        return unauthorized();
    }
    let call = participant_path(&file).to_owned();
    let inside = lock(&core.conferences)
        .iter()
        .any(|c| c.sid == conference && c.participants.iter().any(|p| p.call_sid == call));
    if !inside {
        return not_found();
    }
    core.leave_conference(&call);
    StatusCode::NO_CONTENT.into_response()
}
