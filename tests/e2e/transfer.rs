//! Transfers end to end (issue 15): `hark serve` with Twilio credentials
//! (every request signed), the Twilio fake placing the caller's call and
//! running the TwiML Hark answers, agents from `hark agent`, the caller
//! pressing 0 for a person.

use std::time::Duration;

use crate::fakes::Fakes;
use crate::fakes::twilio::Phone;
use crate::records::Node;
use crate::support::{GREETING, Hark, QUIET, repo_path, speech};

const BUSINESS: &str = "+14155550100";
const ASHA: &str = "+14155550111";

struct Desk {
    fakes: Fakes,
    node: Node,
    hark: Hark,
}

async fn desk(policy: &str, agents: &[(&str, &str, &str)]) -> Desk {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    for (name, address, skills) in agents {
        hark_agent(
            &node,
            &[
                "add",
                "--name",
                name,
                "--address",
                address,
                "--skills",
                skills,
                "--languages",
                "en,hi",
            ],
        );
        hark_agent(&node, &["state", name, "available"]);
    }
    let mut env = node.env();
    env.extend(fakes.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hark = Hark::start_with(&["--policy", &repo_path(policy)], &env);
    fakes.twilio.point_at(&format!("http://{}", hark.addr));
    Desk { fakes, node, hark }
}

fn hark_agent(node: &Node, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("agent")
        .args(args)
        .envs(node.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn connect(db: &str) -> sqlx::sqlite::SqliteConnection {
    use sqlx::Connection;
    sqlx::sqlite::SqliteConnection::connect(db).await.unwrap()
}

/// The call's end reason, once on record.
async fn end_reason(db: &str, call: &str) -> Option<String> {
    for _ in 0..100 {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT end_reason FROM calls WHERE call_sid = ?")
                .bind(call)
                .fetch_optional(&mut connect(db).await)
                .await
                .unwrap();
        if let Some((Some(reason),)) = row {
            return Some(reason);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn events(db: &str, call: &str) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT seq, kind, detail FROM call_events WHERE call_sid = ? ORDER BY seq")
        .bind(call)
        .fetch_all(&mut connect(db).await)
        .await
        .unwrap()
}

async fn turn_numbers(db: &str, call: &str) -> Vec<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM turns WHERE call_sid = ? ORDER BY seq")
        .bind(call)
        .fetch_all(&mut connect(db).await)
        .await
        .unwrap();
    rows.into_iter().map(|(s,)| s).collect()
}

async fn agent_row(db: &str, name: &str) -> (i64, i64) {
    sqlx::query_as("SELECT active_calls, wrap_up_until FROM agents WHERE name = ?")
        .bind(name)
        .fetch_one(&mut connect(db).await)
        .await
        .unwrap()
}

/// A caller on the fake's line who has heard the greeting and pressed 0.
async fn asks_for_a_person(d: &Desk, from: &str) -> String {
    let sid = d.fakes.twilio.incoming(from, BUSINESS).await;
    let caller = d
        .fakes
        .twilio
        .stream(&sid, 0, GREETING)
        .await
        .expect("a stream");
    assert!(caller.wait_idle(QUIET, GREETING).await, "no greeting");
    caller.dtmf('0');
    sid
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_transfer_sends_the_call_to_the_number_and_ends_it_transferred() {
    let d = desk("tests/policies/transfer-cold.toml", &[]).await;
    let sid = asks_for_a_person(&d, "+14155550123").await;
    let t = &d.fakes.twilio;
    assert!(
        t.wait_call(&sid, Duration::from_secs(15), |c| c.bridged_to.is_some())
            .await,
        "not forwarded: {:?}",
        t.requests()
    );
    assert_eq!(
        t.call(&sid, |c| c.bridged_to.clone()).flatten().as_deref(),
        Some("+14155550199")
    );
    assert_eq!(
        end_reason(&d.node.db, &sid).await.as_deref(),
        Some("transferred")
    );
    let m = d.hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_transfers_total",
            &[("kind", "cold"), ("result", "connected")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("hark_transfer_connect_seconds_count", &[("kind", "cold")]),
        1.0
    );
    // The escalation line played before the redirect.
    let events = events(&d.node.db, &sid).await;
    assert!(
        events
            .iter()
            .any(|(_, k, d)| k == "transfer" && d == "cold connected"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_transfer_whispers_to_the_agent_who_accepts_and_the_bot_leaves() {
    let d = desk(
        "tests/policies/transfer.toml",
        &[("asha", ASHA, "agent,billing")],
    )
    .await;
    let t = &d.fakes.twilio;
    t.phone(
        ASHA,
        Phone::Answer {
            after: Duration::from_millis(300),
            press: Some('1'),
        },
    );
    let sid = asks_for_a_person(&d, "+14155550123").await;
    let room = format!("hark-{sid}");
    assert!(
        t.wait_call(&sid, Duration::from_secs(20), |c| c
            .heard
            .iter()
            .any(|h| h == &format!("joined:{room}")))
            .await,
        "the caller never joined the agent: {:?}",
        t.requests()
    );
    assert_eq!(
        end_reason(&d.node.db, &sid).await.as_deref(),
        Some("transferred")
    );
    let agent = t.dialed().pop().expect("the agent was dialed");
    // The agent alone heard the summary, then the key to press.
    let agent_heard = t.call(&agent, |c| c.heard.clone()).unwrap();
    assert!(
        agent_heard
            .first()
            .is_some_and(|s| s.ends_with("Press 1 to take the call.") && s.len() > 30),
        "{agent_heard:?}"
    );
    let caller_heard = t.call(&sid, |c| c.heard.clone()).unwrap();
    assert!(
        caller_heard.first().is_some_and(|h| h.starts_with("wait:")),
        "{caller_heard:?}"
    );
    assert!(
        !caller_heard.iter().any(|h| h.contains("Press 1")),
        "the caller heard the whisper"
    );
    // Caller and agent are in the one conference.
    let (started, inside) = t
        .conference(&room, |c| {
            let inside: Vec<_> = c
                .participants
                .iter()
                .map(|p| (p.call_sid.clone(), p.start_on_enter, p.end_on_exit))
                .collect();
            (c.started, inside)
        })
        .unwrap();
    assert!(started);
    // The caller did not consent to recording: nor is the conference recorded.
    assert!(
        t.conference(&room, |c| c.recording_callback.is_none())
            .unwrap()
    );
    // The caller waits for the agent; the agent starts it; either leaving ends it.
    assert_eq!(
        inside,
        [(sid.clone(), false, true), (agent.clone(), true, true)]
    );
    // The bot left: no actor of the call is alive.
    let m = d
        .hark
        .wait_metric("hark_call_actors", 0.0, Duration::from_secs(5))
        .await;
    assert_eq!(m, 0.0);
    let m = d.hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_transfers_total",
            &[("kind", "warm"), ("result", "connected")]
        ),
        1.0
    );
    let took = m.sum("hark_transfer_connect_seconds_sum", &[("kind", "warm")]);
    eprintln!("warm transfer: request → agent accepted in {took:.2} s");
    // Both legs on the call's record, in order.
    let events = events(&d.node.db, &sid).await;
    let kinds: Vec<String> = events.iter().map(|(_, k, d)| format!("{k}: {d}")).collect();
    for want in [
        "transfer: caller on hold",
        "stream_ended: stop while away",
        &format!("agent_leg: {agent} dialed"),
        &format!("agent_leg: {agent} answered"),
        &format!("agent_leg: {agent} accepted"),
        "transfer: warm connected",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want:?} not in {kinds:#?}"
        );
    }
    // The handoff: what the agent got, through the API.
    let token = d.node.token("agent", "desk");
    let handoff: serde_json::Value = d
        .hark
        .http()
        .get(d.hark.url(&format!("/api/v1/calls/{sid}/handoff")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(handoff["target"], "agent");
    assert!(
        agent_heard[0].starts_with(handoff["summary"].as_str().unwrap()),
        "{handoff}"
    );
    assert!(
        handoff["transcript"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{handoff}"
    );
    // Reserved while with the caller; released with wrap-up once the agent hangs up.
    assert_eq!(agent_row(&d.node.db, "asha").await.0, 1);
    t.hang_up(&agent).await;
    assert!(
        t.wait_call(&sid, Duration::from_secs(5), |c| c.status == "completed")
            .await
    );
    let mut row = (1, 0);
    for _ in 0..50 {
        row = agent_row(&d.node.db, "asha").await;
        if row.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row.0, 0, "the reservation was not released");
    let rest = row.1 - now_ms();
    assert!(
        (50_000..=60_000).contains(&rest),
        "wrap-up ends in {rest} ms"
    );
    let listed = hark_agent(&d.node, &["list"]);
    assert!(
        listed.contains("asha\t+14155550111\tavailable\t0/1"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conference_of_a_caller_who_consented_is_recorded_and_its_recording_on_record() {
    let d = desk(
        "tests/policies/transfer-recorded.toml",
        &[("asha", ASHA, "agent")],
    )
    .await;
    let t = &d.fakes.twilio;
    t.phone(
        ASHA,
        Phone::Answer {
            after: Duration::from_millis(100),
            press: Some('1'),
        },
    );
    let sid = t.incoming("+14155550123", BUSINESS).await;
    let caller = t.stream(&sid, 0, GREETING).await.unwrap();
    assert!(
        caller.wait_idle(QUIET, GREETING).await,
        "no consent question"
    );
    caller.dtmf('1'); // yes
    assert!(caller.wait_idle(QUIET, GREETING).await, "no greeting");
    caller.dtmf('0');
    let room = format!("hark-{sid}");
    assert!(
        t.wait_call(&sid, Duration::from_secs(20), |c| c
            .heard
            .iter()
            .any(|h| h == &format!("joined:{room}")))
            .await,
        "{:?}",
        t.requests()
    );
    let callback = t
        .conference(&room, |c| c.recording_callback.clone())
        .flatten();
    assert_eq!(
        callback,
        Some(format!(
            "http://{}/twilio/recording?call={sid}",
            d.hark.addr
        ))
    );
    let agent = t.dialed().pop().unwrap();
    t.hang_up(&agent).await;
    let mut found = None;
    for _ in 0..50 {
        found = events(&d.node.db, &sid)
            .await
            .into_iter()
            .find(|(_, k, _)| k == "conference_recording");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, detail) = found.expect("the conference recording on record");
    assert!(
        detail.starts_with("RE") && detail.contains(" completed "),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_does_not_answer_sends_the_caller_back_to_the_bot_on_a_new_stream() {
    let d = desk("tests/policies/transfer.toml", &[("asha", ASHA, "agent")]).await;
    let t = &d.fakes.twilio;
    t.phone(ASHA, Phone::NoAnswer);
    let sid = asks_for_a_person(&d, "+14155550123").await;
    let back = comes_back(&d, &sid, "no_answer").await;
    // Turns go on on the new stream.
    let asked = back.say(speech("order")).await.unwrap();
    assert!(
        back.wait_media_since(asked.ended, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert!(back.wait_idle(QUIET, GREETING).await);
    t.hang_up(&sid).await;
    assert_eq!(end_reason(&d.node.db, &sid).await.as_deref(), Some("stop"));
    // One record, numbered on: no turn or event of the second stream was
    // dropped or numbered apart.
    let turns = turn_numbers(&d.node.db, &sid).await;
    assert!(turns.len() >= 4, "{turns:?}");
    assert!(turns.windows(2).all(|w| w[1] == w[0] + 1), "{turns:?}");
    let events = events(&d.node.db, &sid).await;
    let stream2 = t.call(&sid, |c| c.stream_sids[1].clone()).unwrap();
    assert!(
        events
            .iter()
            .any(|(_, k, d)| k == "stream_started" && *d == stream2),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_agent_sends_the_caller_back_too() {
    let d = desk("tests/policies/transfer.toml", &[("asha", ASHA, "agent")]).await;
    d.fakes.twilio.phone(ASHA, Phone::Busy);
    let sid = asks_for_a_person(&d, "+14155550123").await;
    comes_back(&d, &sid, "no_answer").await;
}

/// Asked through the API by an agent; the agent dialed presses another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_asked_through_the_api_and_declined_comes_back() {
    let d = desk("tests/policies/transfer.toml", &[("asha", ASHA, "agent")]).await;
    let t = &d.fakes.twilio;
    t.phone(
        ASHA,
        Phone::Answer {
            after: Duration::from_millis(100),
            press: Some('9'),
        },
    );
    let sid = t.incoming("+14155550123", BUSINESS).await;
    let caller = t.stream(&sid, 0, GREETING).await.unwrap();
    assert!(caller.wait_idle(QUIET, GREETING).await);
    // The policy transfers: Transfer is in the tree (supervisor + seven).
    assert_eq!(d.hark.metrics().await.get("hark_call_actors"), 8.0);
    let token = d.node.token("agent", "desk");
    let ask = |call: String, body: serde_json::Value| {
        d.hark
            .http()
            .post(d.hark.url(&format!("/api/v1/calls/{call}/transfer")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let target = serde_json::json!({"target": "agent"});
    let unknown = ask("CA00000000000000000000000000000404".into(), target.clone())
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad = ask(sid.clone(), serde_json::json!({"target": "a b"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        ask(sid.clone(), target.clone()).await.unwrap().status(),
        202
    );
    comes_back(&d, &sid, "declined").await;
    let events = events(&d.node.db, &sid).await;
    assert!(
        events
            .iter()
            .any(|(_, k, d)| k == "transfer_requested" && d == "api to agent"),
        "{events:?}"
    );
}

/// The caller is back with the bot on a second stream, has heard it, the
/// transfer counted with `result`, and the agent released without wrap-up.
async fn comes_back(d: &Desk, sid: &str, result: &str) -> std::sync::Arc<hark_loadtest::Caller> {
    let t = &d.fakes.twilio;
    let back = t
        .stream(sid, 1, Duration::from_secs(20))
        .await
        .expect("a new stream");
    assert!(back.wait_idle(QUIET, GREETING).await);
    assert!(back.state().media_frames > 0, "the back line was not heard");
    let m = d.hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_transfers_total",
            &[("kind", "warm"), ("result", result)]
        ),
        1.0
    );
    let (active, wrap) = agent_row(&d.node.db, "asha").await;
    assert_eq!(active, 0);
    assert!(wrap <= now_ms(), "no wrap-up for a call not taken");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transfers_at_once_never_share_an_agent_and_the_one_without_holds_then_falls_back() {
    let d = desk("tests/policies/transfer.toml", &[("asha", ASHA, "agent")]).await;
    let t = &d.fakes.twilio;
    t.phone(
        ASHA,
        Phone::Answer {
            after: Duration::from_millis(200),
            press: Some('1'),
        },
    );
    let (a, b) = tokio::join!(
        asks_for_a_person(&d, "+14155550123"),
        asks_for_a_person(&d, "+14155550124")
    );
    // One agent, max one call: dialed once.
    let mut done = false;
    for _ in 0..300 {
        let m = d.hark.metrics().await;
        done = m.sum("hark_transfers_total", &[("result", "no_agent")]) >= 1.0
            && m.sum("hark_transfers_total", &[("result", "connected")]) >= 1.0;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "{:?}", t.requests());
    assert_eq!(t.dialed().len(), 1, "{:?}", t.requests());
    // The one that held comes back on a second stream (once Twilio has
    // fetched /twilio/return and opened it).
    let mut waiting = None;
    for _ in 0..200 {
        waiting = [&a, &b]
            .into_iter()
            .find(|s| t.call(s, |c| c.streams.len()).unwrap() == 2);
        if waiting.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = waiting.expect("one caller came back");
    // It waited on hold, then came back to the fallback line, a callback noted.
    let heard = t.call(waiting, |c| c.heard.clone()).unwrap();
    assert!(
        heard.first().is_some_and(|h| h.starts_with("wait:")),
        "{heard:?}"
    );
    let back = t.stream(waiting, 1, GREETING).await.unwrap();
    assert!(back.wait_idle(QUIET, GREETING).await);
    assert!(back.state().media_frames > 0);
    t.hang_up(waiting).await;
    end_reason(&d.node.db, waiting).await;
    let outcome: (Option<String>,) = sqlx::query_as("SELECT outcome FROM calls WHERE call_sid = ?")
        .bind(waiting.as_str())
        .fetch_one(&mut connect(&d.node.db).await)
        .await
        .unwrap();
    assert!(
        outcome
            .0
            .as_deref()
            .is_some_and(|o| o.contains("callback_requested")),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_forged_transfer_callbacks_are_refused() {
    let d = desk("tests/policies/transfer.toml", &[]).await;
    let form = [
        ("CallSid", "CA00000000000000000000000000000abc"),
        ("CallStatus", "completed"),
    ];
    for path in [
        "/twilio/recording?call=CA00000000000000000000000000000001",
        "/twilio/agent/answer?call=CA00000000000000000000000000000001",
        "/twilio/agent/accept?call=CA00000000000000000000000000000001",
        "/twilio/agent/status?call=CA00000000000000000000000000000001",
        "/twilio/return?call=CA00000000000000000000000000000001",
    ] {
        let unsigned = d
            .hark
            .http()
            .post(d.hark.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 403, "{path} unsigned");
        let forged = d
            .hark
            .http()
            .post(d.hark.url(path))
            .header("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .header("X-Forwarded-Proto", "http")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403, "{path} forged");
    }
    // Signed, but for an agent leg this node never dialed: refused too.
    let url = d
        .hark
        .url("/twilio/agent/status?call=CA00000000000000000000000000000001");
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let res = d.fakes.twilio.core.post_signed(&url, &params).await;
    assert!(res.as_ref().is_err_and(|e| e.contains("404")), "{res:?}");
    let m = d.hark.metrics().await;
    assert!(m.sum("hark_twilio_signature_failures_total", &[]) >= 10.0);
}
