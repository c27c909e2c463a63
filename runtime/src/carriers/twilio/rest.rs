//! Twilio's REST API (`/2010-04-01`), with the account SID and auth token as
//! HTTP basic credentials: the account check `hark doctor` makes, and call
//! control ([`CallControl`]) on Twilio.
//!
//! - hang up: `POST Calls/{CallSid}.json` `Status=completed`
//! - redirect: `POST Calls/{CallSid}.json` `Url=…`
//! - dial: `POST Calls.json` `To`, `From`, `Url`, `StatusCallback`, `Timeout`;
//!   with answering-machine detection `MachineDetection`, `AsyncAmd=true`,
//!   `AsyncAmdStatusCallback`
//! - forward (cold transfer): `POST Calls/{CallSid}.json` with `Twiml`
//!   `<Dial><Number>` (or `<Sip>`)
//! - conference join: `POST Calls/{CallSid}.json` with `Twiml` that dials
//!   the room (waiting, with `waitUrl` audio, for someone who starts it;
//!   ending it on leaving); hold and remove act on the participant of the in-progress
//!   conference with that friendly name
//!   (`Conferences.json?FriendlyName=…&Status=in-progress`, then
//!   `Conferences/{Sid}/Participants/{CallSid}.json`).

use std::time::Duration;

use hark_actors::providers::{Endpoint, ProviderError, Secret};
use hark_carrier::port::{CallControl, ConferenceOp, ControlError, Dial, MachineDetection};
use hark_carrier::twilio::ids;
use reqwest::Method;

pub const ACCOUNT_SID_ENV: &str = "TWILIO_ACCOUNT_SID";

/// Every REST request's deadline.
const TIMEOUT: Duration = Duration::from_secs(10);

const CARRIER: &str = "twilio";

pub struct TwilioRest {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: Secret,
}

impl TwilioRest {
    pub fn new(endpoint: &Endpoint, account_sid: String, auth_token: Secret) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: endpoint.http_base().to_owned(),
            account_sid,
            auth_token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}{path}",
            self.base, self.account_sid
        )
    }

    /// Fetches the account: credentials valid and the account active.
    pub async fn check_account(&self) -> Result<String, ProviderError> {
        let res = self
            .http
            .get(self.url(".json"))
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .timeout(TIMEOUT)
            .send()
            .await?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(ProviderError::from_status(
                status,
                &format!("account {}", self.account_sid),
            ));
        }
        let account: serde_json::Value = res
            .json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let name = account["friendly_name"].as_str().unwrap_or("?");
        match account["status"].as_str() {
            Some("active") => Ok(format!("account {name:?} active")),
            other => Err(ProviderError::Auth(format!(
                "account {name:?} is {}",
                other.unwrap_or("in an unknown state")
            ))),
        }
    }

    /// One request; the JSON answer on 2xx, else why not.
    async fn request(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, ControlError> {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .timeout(TIMEOUT);
        if method == Method::GET {
            req = req.query(form);
        } else if !form.is_empty() {
            req = req.form(form);
        }
        let unavailable = |e: reqwest::Error| ControlError::Unavailable {
            carrier: CARRIER,
            operation,
            reason: e.to_string(),
        };
        let res = req.send().await.map_err(unavailable)?;
        let status = res.status();
        if status.as_u16() == 204 {
            return Ok(serde_json::Value::Null);
        }
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let reason = format!(
            "HTTP {}: {}",
            status.as_u16(),
            body["message"].as_str().unwrap_or("no message")
        );
        Err(if status.is_server_error() || status.as_u16() == 429 {
            ControlError::Unavailable {
                carrier: CARRIER,
                operation,
                reason,
            }
        } else {
            ControlError::Refused {
                carrier: CARRIER,
                operation,
                reason,
            }
        })
    }

    /// A call SID safe to put in a URL path.
    fn call_path(operation: &'static str, call_id: &str) -> Result<String, ControlError> {
        if ids::is_call_sid(call_id) {
            Ok(format!("/Calls/{call_id}.json"))
        } else {
            Err(ControlError::Refused {
                carrier: CARRIER,
                operation,
                reason: "not a Twilio call SID".into(),
            })
        }
    }

    /// The SID of the in-progress conference named `room`.
    async fn conference_sid(
        &self,
        operation: &'static str,
        room: &str,
    ) -> Result<String, ControlError> {
        let found = self
            .request(
                operation,
                Method::GET,
                "/Conferences.json",
                &[("FriendlyName", room), ("Status", "in-progress")],
            )
            .await?;
        found["conferences"]
            .as_array()
            .and_then(|c| c.first())
            .and_then(|c| c["sid"].as_str())
            .filter(|sid| ids::is_sid(sid, "CF"))
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Refused {
                carrier: CARRIER,
                operation,
                reason: "no conference of that name in progress".into(),
            })
    }
}

/// Text for TwiML (inside an element or a double-quoted attribute).
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[async_trait::async_trait]
impl CallControl for TwilioRest {
    fn carrier(&self) -> &'static str {
        CARRIER
    }

    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        let path = Self::call_path("hang_up", call_id)?;
        self.request("hang_up", Method::POST, &path, &[("Status", "completed")])
            .await
            .map(drop)
    }

    async fn redirect(&self, call_id: &str, url: &str) -> Result<(), ControlError> {
        let path = Self::call_path("redirect", call_id)?;
        self.request("redirect", Method::POST, &path, &[("Url", url)])
            .await
            .map(drop)
    }

    async fn forward(&self, call_id: &str, to: &str) -> Result<(), ControlError> {
        let path = Self::call_path("forward", call_id)?;
        let noun = if to.starts_with("sip:") {
            "Sip"
        } else {
            "Number"
        };
        let twiml = format!(
            "<Response><Dial><{noun}>{}</{noun}></Dial></Response>",
            xml_text(to)
        );
        self.request("forward", Method::POST, &path, &[("Twiml", &twiml)])
            .await
            .map(drop)
    }

    async fn status(&self, call_id: &str) -> Result<String, ControlError> {
        let path = Self::call_path("status", call_id)?;
        let call = self.request("status", Method::GET, &path, &[]).await?;
        call["status"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Unavailable {
                carrier: CARRIER,
                operation: "status",
                reason: "no status in the answer".into(),
            })
    }

    async fn dial(&self, dial: &Dial) -> Result<String, ControlError> {
        let timeout = dial.timeout_secs.to_string();
        let mut form = vec![
            ("To", dial.to.as_str()),
            ("From", dial.from.as_str()),
            ("Url", dial.answer_url.as_str()),
            ("Timeout", timeout.as_str()),
        ];
        if let Some(status) = &dial.status_url {
            form.push(("StatusCallback", status));
            for event in ["initiated", "ringing", "answered", "completed"] {
                form.push(("StatusCallbackEvent", event));
            }
        }
        // Asynchronous detection: the call is answered (and streams) at
        // once; the verdict comes to `amd_url`.
        match dial.machine_detection {
            MachineDetection::Off => {}
            MachineDetection::Enable => form.push(("MachineDetection", "Enable")),
            MachineDetection::DetectMessageEnd => {
                form.push(("MachineDetection", "DetectMessageEnd"));
            }
        }
        if dial.machine_detection != MachineDetection::Off {
            form.push(("AsyncAmd", "true"));
            if let Some(url) = &dial.amd_url {
                form.push(("AsyncAmdStatusCallback", url));
                form.push(("AsyncAmdStatusCallbackMethod", "POST"));
            }
        }
        let call = self
            .request("dial", Method::POST, "/Calls.json", &form)
            .await?;
        call["sid"]
            .as_str()
            .filter(|sid| ids::is_call_sid(sid))
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Unavailable {
                carrier: CARRIER,
                operation: "dial",
                reason: "the answer has no call SID".into(),
            })
    }

    async fn conference(&self, op: &ConferenceOp) -> Result<(), ControlError> {
        match op {
            ConferenceOp::Join {
                call_id,
                room,
                wait_url,
                recording_callback,
            } => {
                let path = Self::call_path("conference_join", call_id)?;
                let mut wait = wait_url
                    .as_deref()
                    .map(|u| format!(" waitUrl=\"{}\"", xml_text(u)))
                    .unwrap_or_default();
                if let Some(cb) = recording_callback {
                    wait.push_str(&format!(
                        " record=\"record-from-start\" recordingStatusCallback=\"{}\" \
                         recordingStatusCallbackEvent=\"completed\"",
                        xml_text(cb)
                    ));
                }
                let twiml = format!(
                    "<Response><Dial><Conference startConferenceOnEnter=\"false\" \
                     endConferenceOnExit=\"true\"{wait}>{}</Conference></Dial></Response>",
                    xml_text(room)
                );
                self.request("conference_join", Method::POST, &path, &[("Twiml", &twiml)])
                    .await
                    .map(drop)
            }
            ConferenceOp::Hold {
                room,
                call_id,
                hold,
            } => {
                Self::call_path("conference_hold", call_id)?;
                let sid = self.conference_sid("conference_hold", room).await?;
                self.request(
                    "conference_hold",
                    Method::POST,
                    &format!("/Conferences/{sid}/Participants/{call_id}.json"),
                    &[("Hold", if *hold { "true" } else { "false" })],
                )
                .await
                .map(drop)
            }
            ConferenceOp::Remove { room, call_id } => {
                Self::call_path("conference_remove", call_id)?;
                let sid = self.conference_sid("conference_remove", room).await?;
                self.request(
                    "conference_remove",
                    Method::DELETE,
                    &format!("/Conferences/{sid}/Participants/{call_id}.json"),
                    &[],
                )
                .await
                .map(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a local fake of the endpoints above: it checks the
    //! credentials, keeps calls and conference participants, and answers
    //! as Twilio documents (JSON bodies, 201 on create, 204 on delete,
    //! 404 with a `message` for an unknown call).

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Form, Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use base64::Engine;
    use serde_json::json;

    use super::*;

    const ACCOUNT: &str = "AC00000000000000000000000000000001";
    const TOKEN: &str = "secret";

    #[derive(Default)]
    struct Fake {
        /// Call SID → its latest form fields.
        calls: BTreeMap<String, BTreeMap<String, String>>,
        /// Participants (call SIDs) and whether each is on hold, of CF1 ("room").
        participants: BTreeMap<String, bool>,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn authorized(headers: &HeaderMap) -> bool {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
        );
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    }

    fn not_found() -> Response {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 20404, "message": "The requested resource was not found"})),
        )
            .into_response()
    }

    async fn create_call(
        State(fake): State<Shared>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut fake = fake.lock().unwrap();
        let sid = format!("CA{:032x}", fake.calls.len() + 100);
        let fields: BTreeMap<String, String> = form.into_iter().collect();
        if !fields.contains_key("To") || !fields.contains_key("Url") {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": "To and Url are required"})),
            )
                .into_response();
        }
        fake.calls.insert(sid.clone(), fields);
        (
            StatusCode::CREATED,
            axum::Json(json!({"sid": sid, "status": "queued"})),
        )
            .into_response()
    }

    async fn update_call(
        State(fake): State<Shared>,
        headers: HeaderMap,
        Path((_account, file)): Path<(String, String)>,
        Form(form): Form<BTreeMap<String, String>>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let sid = file.trim_end_matches(".json");
        let mut fake = fake.lock().unwrap();
        let Some(call) = fake.calls.get_mut(sid) else {
            return not_found();
        };
        call.extend(form);
        axum::Json(json!({"sid": sid, "status": call.get("Status").cloned().unwrap_or("in-progress".into())}))
            .into_response()
    }

    async fn conferences(
        headers: HeaderMap,
        Query(q): Query<BTreeMap<String, String>>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let list = if q.get("FriendlyName").map(String::as_str) == Some("room")
            && q.get("Status").map(String::as_str) == Some("in-progress")
        {
            json!([{"sid": "CF00000000000000000000000000000001", "friendly_name": "room"}])
        } else {
            json!([])
        };
        axum::Json(json!({ "conferences": list })).into_response()
    }

    /// The participant's call SID, if `conference` is the fake's one and the
    /// call is in it.
    fn in_conference(fake: &Fake, conference: &str, file: &str) -> Option<String> {
        let call = file.trim_end_matches(".json");
        (conference == "CF00000000000000000000000000000001" && fake.participants.contains_key(call))
            .then(|| call.to_owned())
    }

    async fn hold(
        State(fake): State<Shared>,
        headers: HeaderMap,
        Path((_account, conference, file)): Path<(String, String, String)>,
        Form(form): Form<BTreeMap<String, String>>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut fake = fake.lock().unwrap();
        let Some(call) = in_conference(&fake, &conference, &file) else {
            return not_found();
        };
        let hold = form.get("Hold").map(String::as_str) == Some("true");
        fake.participants.insert(call.clone(), hold);
        axum::Json(json!({"call_sid": call, "hold": hold})).into_response()
    }

    async fn remove(
        State(fake): State<Shared>,
        headers: HeaderMap,
        Path((_account, conference, file)): Path<(String, String, String)>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut fake = fake.lock().unwrap();
        let Some(call) = in_conference(&fake, &conference, &file) else {
            return not_found();
        };
        fake.participants.remove(&call);
        StatusCode::NO_CONTENT.into_response()
    }

    async fn start() -> (TwilioRest, Shared) {
        let fake: Shared = Arc::default();
        let base = "/2010-04-01/Accounts/{account}";
        let router = Router::new()
            .route(&format!("{base}/Calls.json"), post(create_call))
            .route(&format!("{base}/Calls/{{file}}"), post(update_call))
            .route(&format!("{base}/Conferences.json"), get(conferences))
            .route(
                &format!("{base}/Conferences/{{conference}}/Participants/{{file}}"),
                post(hold).delete(remove),
            )
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let endpoint = Endpoint {
            base_url: format!("http://{addr}"),
            api_key_env: String::new(),
        };
        let rest = TwilioRest::new(&endpoint, ACCOUNT.into(), Secret::new(TOKEN));
        (rest, fake)
    }

    #[tokio::test]
    async fn dial_creates_a_call_with_its_callbacks_and_returns_its_sid() {
        let (rest, fake) = start().await;
        let sid = rest
            .dial(&Dial {
                to: "+14155550101".into(),
                from: "+14155550102".into(),
                answer_url: "https://hark.example/twilio/voice".into(),
                status_url: Some("https://hark.example/twilio/status".into()),
                timeout_secs: 25,
                machine_detection: MachineDetection::DetectMessageEnd,
                amd_url: Some("https://hark.example/twilio/outbound/amd?id=OB1".into()),
            })
            .await
            .unwrap();
        let fake = fake.lock().unwrap();
        let call = &fake.calls[&sid];
        assert_eq!(call["To"], "+14155550101");
        assert_eq!(call["Timeout"], "25");
        assert_eq!(call["StatusCallback"], "https://hark.example/twilio/status");
        assert_eq!(call["MachineDetection"], "DetectMessageEnd");
        assert_eq!(call["AsyncAmd"], "true");
        assert_eq!(
            call["AsyncAmdStatusCallback"],
            "https://hark.example/twilio/outbound/amd?id=OB1"
        );
    }

    #[tokio::test]
    async fn hang_up_and_redirect_update_the_call_and_an_unknown_call_is_refused() {
        let (rest, fake) = start().await;
        let sid = format!("CA{:032x}", 7);
        fake.lock()
            .unwrap()
            .calls
            .insert(sid.clone(), BTreeMap::new());
        rest.redirect(&sid, "https://hark.example/next")
            .await
            .unwrap();
        rest.hang_up(&sid).await.unwrap();
        {
            let fake = fake.lock().unwrap();
            assert_eq!(fake.calls[&sid]["Url"], "https://hark.example/next");
            assert_eq!(fake.calls[&sid]["Status"], "completed");
        }
        let unknown = rest.hang_up("CA404").await;
        assert!(
            matches!(&unknown, Err(ControlError::Refused { reason, .. }) if reason.contains("404")),
            "{unknown:?}"
        );
        let bad = rest.hang_up("CA1/../../Accounts").await;
        assert!(matches!(bad, Err(ControlError::Refused { .. })), "{bad:?}");
    }

    #[tokio::test]
    async fn conference_join_hold_and_remove() {
        let (rest, fake) = start().await;
        let sid = format!("CA{:032x}", 9);
        fake.lock()
            .unwrap()
            .calls
            .insert(sid.clone(), BTreeMap::new());
        rest.conference(&ConferenceOp::Join {
            call_id: sid.clone(),
            room: "room <1>".into(),
            wait_url: Some("https://h/hold?a=1&b=2".into()),
            recording_callback: None,
        })
        .await
        .unwrap();
        assert_eq!(
            fake.lock().unwrap().calls[&sid]["Twiml"],
            "<Response><Dial><Conference startConferenceOnEnter=\"false\" endConferenceOnExit=\"true\" \
             waitUrl=\"https://h/hold?a=1&amp;b=2\">room &lt;1&gt;</Conference></Dial></Response>"
        );
        rest.forward(&sid, "sip:desk@pbx.example.com")
            .await
            .unwrap();
        assert_eq!(
            fake.lock().unwrap().calls[&sid]["Twiml"],
            "<Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>"
        );
        fake.lock().unwrap().participants.insert(sid.clone(), false);
        rest.conference(&ConferenceOp::Hold {
            room: "room".into(),
            call_id: sid.clone(),
            hold: true,
        })
        .await
        .unwrap();
        assert!(fake.lock().unwrap().participants[&sid]);
        rest.conference(&ConferenceOp::Remove {
            room: "room".into(),
            call_id: sid.clone(),
        })
        .await
        .unwrap();
        assert!(fake.lock().unwrap().participants.is_empty());
        let none = rest
            .conference(&ConferenceOp::Remove {
                room: "elsewhere".into(),
                call_id: sid,
            })
            .await;
        assert!(
            matches!(none, Err(ControlError::Refused { .. })),
            "{none:?}"
        );
    }

    #[tokio::test]
    async fn wrong_credentials_are_refused_and_an_unreachable_api_is_unavailable() {
        let (mut rest, _fake) = start().await;
        rest.auth_token = Secret::new("wrong");
        let r = rest.hang_up("CA1").await;
        assert!(matches!(r, Err(ControlError::Refused { .. })), "{r:?}");
        rest.base = "http://127.0.0.1:9".into();
        let r = rest.hang_up("CA1").await;
        assert!(matches!(r, Err(ControlError::Unavailable { .. })), "{r:?}");
    }
}
