//! Outbound calls end to end (issue 16): `hark serve` with Twilio
//! credentials (every callback signed), the Twilio fake placing the calls
//! Hark asks for and running the TwiML it answers; leads that answer,
//! voicemails with a beep, phones that ring out or are busy, listed numbers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::Fakes;
use crate::fakes::twilio::Phone;
use crate::records::Node;
use crate::support::{Hark, QUIET, repo_path, speech, temp_dir};

const BUSINESS: &str = "+14155550100";
const PRIYA: &str = "+14155550123";

struct Dialer {
    fakes: Fakes,
    node: Node,
    hark: Hark,
    token: String,
}

async fn dialer() -> Dialer {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    let mut env = node.env();
    env.extend(fakes.env());
    env.push(("HARK_OUTBOUND__CALLER_ID".into(), BUSINESS.into()));
    env.push(("HARK_OUTBOUND__RING_TIMEOUT_SECS".into(), "5".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hark = Hark::start_with(
        &["--policy", &repo_path("tests/policies/outbound.toml")],
        &env,
    );
    fakes.twilio.point_at(&format!("http://{}", hark.addr));
    let token = node.token("ai_ops", "campaigns");
    Dialer {
        fakes,
        node,
        hark,
        token,
    }
}

impl Dialer {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .hark
            .http()
            .request(method, self.hark.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let code = res.status().as_u16();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    async fn place(&self, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, "/api/v1/calls", Some(body))
            .await
    }

    /// Polls the placement until `f` accepts it.
    async fn placement_until(&self, id: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (code, body) = self
                .api(
                    reqwest::Method::GET,
                    &format!("/api/v1/outbound/{id}"),
                    None,
                )
                .await;
            if code == 200 && f(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("placement {id} never matched: {last}\n{}", self.hark.logs());
    }

    fn hark_cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(args)
            .env("HARK_API_URL", format!("http://{}", self.hark.addr))
            .env("HARK_API_TOKEN", &self.token)
            .output()
            .unwrap()
    }
}

async fn connect(db: &str) -> sqlx::sqlite::SqliteConnection {
    use sqlx::Connection;
    sqlx::sqlite::SqliteConnection::connect(db).await.unwrap()
}

/// `(end_reason, disposition, direction)` once the call is over on record.
async fn call_row(db: &str, call: &str) -> (String, Option<String>, String) {
    for _ in 0..150 {
        let row: Option<(Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT end_reason, disposition, direction FROM calls WHERE call_sid = ?",
        )
        .bind(call)
        .fetch_optional(&mut connect(db).await)
        .await
        .unwrap();
        if let Some((Some(reason), disposition, direction)) = row
            && disposition.is_some()
        {
            return (reason, disposition, direction);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {call} never ended on record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_who_answers_is_not_talked_over_and_the_bot_knows_their_fields() {
    let d = dialer().await;
    let t = &d.fakes.twilio;
    t.phone(
        PRIYA,
        Phone::Lead {
            after: Duration::from_millis(300),
            plays: None,
            verdicts: vec![],
        },
    );
    // A national number, read in the default region (US).
    let request = json!({
        "to": "(415) 555-0123",
        "policy": "outbound",
        "variables": {"name": "Priya", "plan": "pro"},
        "idempotency_key": "lead-42-attempt-1",
    });
    let (code, placed) = d.place(request.clone()).await;
    assert_eq!(code, 201, "{placed}");
    assert_eq!(placed["to"], PRIYA);
    assert_eq!(placed["from"], BUSINESS);
    assert_eq!(placed["state"], "queued");
    let id = placed["id"].as_str().unwrap().to_owned();
    let sid = placed["call_sid"].as_str().unwrap().to_owned();
    // The same request again (a client's retry): the same call, not a second.
    let (code, again) = d.place(request).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(t.dialed(), std::slice::from_ref(&sid));
    assert!(
        t.requests()
            .iter()
            .any(|r| r.contains("Url=") && r.contains(&format!("/twilio/outbound/answer?id={id}")))
    );
    // Answered: the stream opens, and the bot says nothing until the callee does.
    let callee = t
        .stream(&sid, 0, Duration::from_secs(10))
        .await
        .expect("a stream");
    let opened = callee.connected_at();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        callee.state().media_since(opened),
        0,
        "the bot talked before the callee said anything"
    );
    d.placement_until(&id, |p| p["state"] == "in-progress")
        .await;
    let hello = callee.say(speech("yes")).await.unwrap();
    let greeted = callee
        .wait_media_since(hello.ended, Duration::from_secs(8))
        .await
        .expect("the greeting after the callee's first words");
    assert!(greeted >= hello.ended);
    assert!(callee.wait_idle(QUIET, Duration::from_secs(10)).await);
    // A conversation: the model's prompt carries the lead's fields.
    let asked = callee.say(speech("hours")).await.unwrap();
    callee
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    let prompt = d.fakes.openai.chat_requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        prompt.contains("calling Priya about the pro plan"),
        "{prompt}"
    );
    // The callee hangs up: the carrier's final status is the placement's.
    t.hang_up(&sid).await;
    let done = d.placement_until(&id, |p| p["state"] == "completed").await;
    assert_eq!(done["call_sid"], sid.as_str());
    let (_, _, direction) = call_row(&d.node.db, &sid).await;
    assert_eq!(direction, "outbound-api");
    let metrics = d.hark.metrics().await;
    assert_eq!(
        metrics.sum("hark_outbound_calls_total", &[("result", "completed")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voicemail_gets_the_message_after_its_beep_and_is_disposed_voicemail() {
    let d = dialer().await;
    let t = &d.fakes.twilio;
    // The machine's greeting (espeak-ng) ends at 2.99 s, its 1 kHz beep at
    // 3.49 s. Detection says "machine" but not when its greeting ends
    // (`Enable`): Hark's own beep detector times the message.
    let greeting: &'static [u8] = Box::leak(
        std::fs::read(repo_path(
            "tests/fixtures/beeps/beep-1000hz-20db-500ms-brownnoise-at2988.ulaw",
        ))
        .unwrap()
        .into_boxed_slice(),
    );
    t.phone(
        PRIYA,
        Phone::Lead {
            after: Duration::from_millis(200),
            plays: Some(greeting),
            verdicts: vec![(Duration::from_millis(1200), "machine_start")],
        },
    );
    let (code, placed) = d
        .place(json!({
            "to": PRIYA,
            "policy": "outbound",
            "variables": {"name": "Priya", "plan": "pro"},
            "machine_detection": "enable",
        }))
        .await;
    assert_eq!(code, 201, "{placed}");
    assert!(
        t.requests()
            .iter()
            .any(|r| r.ends_with("MachineDetection=Enable"))
    );
    let sid = placed["call_sid"].as_str().unwrap().to_owned();
    let id = placed["id"].as_str().unwrap().to_owned();
    let machine = t
        .stream(&sid, 0, Duration::from_secs(10))
        .await
        .expect("a stream");
    let opened = machine.connected_at();
    let first = machine
        .wait_media_since(opened, Duration::from_secs(15))
        .await
        .expect("the voicemail message");
    let after = first - opened;
    assert!(
        after >= Duration::from_millis(3490),
        "the message started {after:?} after the answer, before the beep ended"
    );
    assert!(
        after < Duration::from_millis(5000),
        "{after:?}: slow to start"
    );
    // The message plays in full, then Hark hangs up.
    assert!(machine.wait_closed(Duration::from_secs(30)).await.is_some());
    let (reason, disposition, _) = call_row(&d.node.db, &sid).await;
    assert_eq!(reason, "voicemail");
    assert_eq!(disposition.as_deref(), Some("voicemail"));
    let p = d
        .placement_until(&id, |p| p["answered_by"] == "machine_start")
        .await;
    assert_eq!(p["machine_detection"], "enable");

    // With DetectMessageEnd, Twilio's `machine_end_beep` is enough on its own.
    let other = "+14155550124";
    t.phone(
        other,
        Phone::Lead {
            after: Duration::from_millis(200),
            plays: None,
            // As Twilio documents DetectMessageEnd: a machine's verdict
            // comes once, at the end of its greeting.
            verdicts: vec![(Duration::from_millis(1500), "machine_end_beep")],
        },
    );
    let (code, placed) = d
        .place(
            json!({"to": other, "policy": "outbound", "machine_detection": "detect_message_end"}),
        )
        .await;
    assert_eq!(code, 201, "{placed}");
    let sid = placed["call_sid"].as_str().unwrap().to_owned();
    let machine = t
        .stream(&sid, 0, Duration::from_secs(10))
        .await
        .expect("a stream");
    let opened = machine.connected_at();
    let first = machine
        .wait_media_since(opened, Duration::from_secs(10))
        .await
        .expect("the voicemail message");
    assert!(
        first - opened >= Duration::from_millis(1200),
        "{:?}",
        first - opened
    );
    assert!(machine.wait_closed(Duration::from_secs(30)).await.is_some());
    let (reason, disposition, _) = call_row(&d.node.db, &sid).await;
    assert_eq!(
        (reason.as_str(), disposition.as_deref()),
        ("voicemail", Some("voicemail"))
    );
    let metrics = d.hark.metrics().await;
    assert_eq!(
        metrics.sum(
            "hark_outbound_answered_by_total",
            &[("verdict", "machine_end")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_and_busy_are_the_placements_states() {
    let d = dialer().await;
    let t = &d.fakes.twilio;
    t.phone("+14155550131", Phone::NoAnswer);
    t.phone("+14155550132", Phone::Busy);
    let mut ids = Vec::new();
    for to in ["+14155550131", "+14155550132"] {
        let (code, placed) = d.place(json!({"to": to})).await;
        assert_eq!(code, 201, "{placed}");
        ids.push(placed["id"].as_str().unwrap().to_owned());
    }
    d.placement_until(&ids[1], |p| p["state"] == "busy").await;
    d.placement_until(&ids[0], |p| p["state"] == "no-answer")
        .await;
    let metrics = d.hark.metrics().await;
    for result in ["busy", "no_answer"] {
        assert_eq!(
            metrics.sum("hark_outbound_calls_total", &[("result", result)]),
            1.0,
            "{result}"
        );
    }
    let (code, list) = d.api(reqwest::Method::GET, "/api/v1/outbound", None).await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_numbers_are_never_dialed_and_bad_requests_say_why() {
    let d = dialer().await;
    let t = &d.fakes.twilio;
    // The do-not-call list, from a file through the CLI (a bad row reported).
    let dir = temp_dir("dnc");
    let file = dir.join("dnc.csv");
    std::fs::write(
        &file,
        "number,name\n+14155550177,Ravi\nnot a number,x\n(415) 555-0179,Meera\n",
    )
    .unwrap();
    let out = d.hark_cli(&[
        "dnc",
        "import",
        file.to_str().unwrap(),
        "--reason",
        "asked not to be called",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("dnc.csv:3:"), "{stderr}");
    assert!(
        stderr.contains("2 numbers on the do-not-call list; 1 rows"),
        "{stderr}"
    );
    let (code, list) = d.api(reqwest::Method::GET, "/api/v1/dnc", None).await;
    assert_eq!(code, 200);
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["number"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"+14155550177") && listed.contains(&"+14155550179"),
        "{list}"
    );
    // The blocklist counts too.
    let admin = d.node.token("admin", "root");
    let res = d
        .hark
        .http()
        .post(d.hark.url("/api/v1/blocklist"))
        .bearer_auth(&admin)
        .json(&json!({"number": "+14155550178", "reason": "abuse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut refused_ids = Vec::new();
    for (to, reason) in [
        ("+1 000 000 0000", "invalid_number"),
        ("+14155550177", "do_not_call"),
        ("415 555 0179", "do_not_call"),
        ("+14155550178", "blocklist"),
    ] {
        let (code, refused) = d.place(json!({"to": to})).await;
        assert_eq!(code, 409, "{refused}");
        assert_eq!(refused["state"], "refused");
        assert_eq!(refused["reason"], reason);
        // On record, with its reason.
        let (code, kept) = d
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/outbound/{}", refused["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!((code, kept["reason"].as_str()), (200, Some(reason)));
        refused_ids.push(refused["id"].as_str().unwrap().to_owned());
    }
    // The CLI says so too, and fails.
    let out = d.hark_cli(&["call", "+14155550177", "--var", "name=Ravi"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not dialed: the number is on the do-not-call list")
    );
    assert!(
        t.dialed().is_empty(),
        "a listed number was dialed: {:?}",
        t.requests()
    );
    let metrics = d.hark.metrics().await;
    assert_eq!(
        metrics.sum(
            "hark_outbound_calls_total",
            &[("result", "refused_do_not_call")]
        ),
        3.0
    );
    // Off the list (admin only), the number is dialed; through the CLI.
    let res = d
        .hark
        .http()
        .delete(d.hark.url("/api/v1/dnc/+14155550177"))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "ai_ops may not take numbers off");
    let res = d
        .hark
        .http()
        .delete(d.hark.url("/api/v1/dnc/+14155550177"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    t.phone("+14155550177", Phone::Busy);
    let out = d.hark_cli(&[
        "call",
        "+14155550177",
        "--policy",
        "outbound",
        "--var",
        "name=Ravi",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(placed["to"], "+14155550177");
    assert_eq!(t.dialed().len(), 1);
    // Audited, without the number itself.
    let (code, audit) = {
        let res = d
            .hark
            .http()
            .get(d.hark.url("/api/v1/audit"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(code, 200);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"dnc_add") && actions.contains(&"dnc_remove"),
        "{actions:?}"
    );
    assert!(!audit.to_string().contains("5550177"), "{audit}");
    // Bad requests, each with its reason; the wrong role.
    for (body, says) in [
        (json!({"to": "banana"}), "to:"),
        (json!({"to": PRIYA, "policy": "nope"}), "policy:"),
        (
            json!({"to": PRIYA, "variables": (0..51).map(|i| (format!("v{i}"), json!("x"))).collect::<serde_json::Map<_, _>>()}),
            "variables",
        ),
        (
            json!({"to": PRIYA, "machine_detection": "sometimes"}),
            "machine_detection",
        ),
        (json!({"to": PRIYA, "from": "12"}), "from:"),
    ] {
        let (code, answer) = d.place(body.clone()).await;
        assert!([400, 404, 422].contains(&code), "{body}: {code} {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
    let viewer = d.node.token("viewer", "wall");
    let res = d
        .hark
        .http()
        .post(d.hark.url("/api/v1/calls"))
        .bearer_auth(&viewer)
        .json(&json!({"to": PRIYA}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(t.dialed().len(), 1);
    // Erasure on request covers placements, refused ones too; the lists keep the number.
    let res = d
        .hark
        .http()
        .delete(d.hark.url("/api/v1/personal-data?number=%2B14155550178"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, erased) = d
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/outbound/{}", refused_ids[3]),
            None,
        )
        .await;
    assert_eq!(
        (erased["to"].as_str(), erased["reason"].as_str()),
        (Some(""), Some("blocklist"))
    );
    let (_, kept) = d
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/outbound/{}", refused_ids[1]),
            None,
        )
        .await;
    assert_eq!(kept["to"], "+14155550177");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_forged_outbound_callbacks_are_refused() {
    let d = dialer().await;
    let sid = format!("CA{:032x}", 5);
    let params = [
        ("CallSid", sid.as_str()),
        ("AnsweredBy", "human"),
        ("CallStatus", "completed"),
    ];
    for path in [
        "/twilio/outbound/answer?id=OB1",
        "/twilio/outbound/amd?id=OB1",
        "/twilio/status?outbound=OB1",
    ] {
        for signature in [None, Some("Zm9yZ2Vk")] {
            let mut req = d.hark.http().post(d.hark.url(path)).form(&params);
            if let Some(s) = signature {
                req = req.header("X-Twilio-Signature", s);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 403, "{path} with {signature:?}");
        }
    }
    // Signed, but for no placement of this node: answered with a polite hang-up.
    let url = d.hark.url("/twilio/outbound/answer?id=OB1");
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = d.fakes.twilio.core.post_signed(&url, &pairs).await.unwrap();
    assert!(body.contains("<Hangup/>"), "{body}");
}

/// The placement's state as callbacks arrive out of order: only forward, a
/// final state kept; an idempotency key used twice writes one row.
async fn placements_move_forward(store: hark_runtime::store::Store) {
    use base64::Engine;
    use hark_runtime::store::Row;
    use hark_runtime::store::outbound::{NewPlacement, Placement};
    store.migrate().await.unwrap();
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let pii = hark_runtime::pii::Pii::from_spec(&format!("k1:{}", b64(7)), &b64(9)).unwrap();
    let id = format!("OB{:032x}", rand_u64());
    let p = Placement {
        id: id.clone(),
        to: PRIYA.into(),
        from: BUSINESS.into(),
        policy: "outbound".into(),
        machine_detection: "off".into(),
        call_sid: None,
        state: "dialing".into(),
        reason: String::new(),
        answered_by: None,
        idempotency_key: Some(id.clone()),
        created_by: "test".into(),
        created_at: 1,
        updated_at: 1,
    };
    let vars = r#"{"name":"प्रिया"}"#;
    let new = || NewPlacement {
        placement: &p,
        variables_json: vars,
    };
    assert!(store.placement_insert(new(), &pii).await.unwrap().is_none());
    let mut again = p.clone();
    again.id = format!("{id}x");
    let first = store
        .placement_insert(
            NewPlacement {
                placement: &again,
                variables_json: "{}",
            },
            &pii,
        )
        .await
        .unwrap()
        .expect("the first request");
    assert_eq!(first.id, id);
    let row = |sid: Option<&str>, state: &str| {
        Row::Placement(hark_actors::records::PlacementMove {
            id: id.clone(),
            call_sid: sid.map(str::to_owned),
            state: Some(state.to_owned()),
            reason: None,
            answered_by: None,
            at_ms: 2,
        })
    };
    let sid = format!("CA{:032x}", 77);
    let mut seen = Vec::new();
    for (update, want) in [
        (row(None, "ringing"), "ringing"),
        // The dialer's own `queued` after the carrier's `ringing`: kept back.
        (row(Some(&sid), "queued"), "ringing"),
        (row(None, "in-progress"), "in-progress"),
        (row(None, "initiated"), "in-progress"),
        (row(None, "completed"), "completed"),
        (row(None, "busy"), "completed"),
    ] {
        store.write(std::slice::from_ref(&update)).await.unwrap();
        let (got, lead) = store.placement(&id, &pii).await.unwrap().unwrap();
        assert_eq!(got.state, want, "after {update:?}");
        assert_eq!(lead, vars);
        seen.push(got.call_sid.clone());
    }
    assert_eq!(seen.last().unwrap().as_deref(), Some(sid.as_str()));
}

fn rand_u64() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_only_move_forward_on_postgres() {
    let node = Node::postgres().await;
    placements_move_forward(hark_runtime::store::Store::open(&node.db).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_only_move_forward_on_sqlite() {
    let node = Node::sqlite();
    placements_move_forward(hark_runtime::store::Store::open(&node.db).await.unwrap()).await;
}
