//! Who may start a call: no unsigned node on a public address, a stream
//! bound to the webhook that admitted its call, one stream per call, and no
//! replayed request rewriting a call on record.

use std::process::Command;
use std::time::Duration;

use hark_loadtest::{Caller, CallerOptions};

use crate::records::{Api, Node, TOKEN, sign};
use crate::support::{GREETING, Hark, QUIET, speech, temp_dir};

fn sid(n: u64) -> String {
    format!("CA{n:032x}")
}

#[test]
fn serve_refuses_a_public_address_without_twilio_signatures() {
    let data = temp_dir("hark-open");
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("HARK_ALLOW_UNSIGNED_REQUESTS")
        .env("HARK_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0 without Twilio signatures")
            && err.contains("TWILIO_AUTH_TOKEN")
            && err.contains("allow_unsigned_requests"),
        "{err}"
    );
}

#[tokio::test]
async fn allow_unsigned_requests_serves_a_public_address_with_a_loud_warning() {
    let hark = Hark::spawn(
        "0.0.0.0:0",
        &[],
        &[("HARK_ALLOW_UNSIGNED_REQUESTS", "true")],
        None,
    );
    assert!(
        hark.banner()
            .contains("WARNING: UNSIGNED REQUESTS ACCEPTED ON 0.0.0.0:"),
        "{}",
        hark.banner()
    );
    // On loopback (every other test) there is no such warning.
    let local = Hark::start(&[]);
    assert!(!local.banner().contains("UNSIGNED REQUESTS ACCEPTED"));
    assert!(local.banner().contains("twilio requests NOT verified"));
}

/// Posts a signed incoming-call webhook; the stream token from its TwiML.
async fn webhook_token(hark: &Hark, call_sid: &str) -> String {
    webhook_token_to(hark, call_sid, "+14155550106", "").await
}

/// The same, for a call to `to`, at the webhook URL with `query` (an
/// outbound call names its policy there: `?policy=NAME`).
pub async fn webhook_token_to(hark: &Hark, call_sid: &str, to: &str, query: &str) -> String {
    token_in(&voice_webhook(hark, call_sid, "+14155550103", to, query).await)
}

/// Posts a signed voice webhook for a call from `from` to `to`; the TwiML.
pub async fn voice_webhook(
    hark: &Hark,
    call_sid: &str,
    from: &str,
    to: &str,
    query: &str,
) -> String {
    let params = [
        ("CallSid", call_sid),
        ("From", from),
        ("To", to),
        ("Direction", "inbound"),
    ];
    let path = format!("/twilio/voice{query}");
    let sig = sign(&format!("https://{}{path}", hark.addr), &params);
    hark.http()
        .post(hark.url(&path))
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The stream token in the webhook's TwiML.
pub fn token_in(xml: &str) -> String {
    xml.split(r#"<Parameter name="hark_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no token in {xml}"))
        .to_owned()
}

/// A stream as Twilio opens it: signed upgrade, `start` with `params`.
pub async fn signed_stream(hark: &Hark, n: u64, params: &[(&str, &str)]) -> Caller {
    let mut opts = CallerOptions::numbered(&hark.media_url(), n);
    let sig = sign(&format!("wss://{}/twilio/media", hark.addr), &[]);
    opts.headers.push(("X-Twilio-Signature".into(), sig));
    for (k, v) in params {
        opts.custom_parameters.insert((*k).into(), (*v).into());
    }
    Caller::connect(opts).await.unwrap()
}

async fn refused_with(caller: &Caller) -> (Option<u16>, String) {
    caller
        .wait_closed(Duration::from_secs(5))
        .await
        .expect("the stream was not closed")
}

#[tokio::test]
async fn with_signatures_on_a_stream_needs_a_valid_token_for_its_own_call() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start(&[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let token = webhook_token(&hark, &sid(500)).await;

    // No token: refused, with the reason in the close frame.
    let none = signed_stream(&hark, 501, &[]).await;
    assert_eq!(
        refused_with(&none).await,
        (Some(1008), "token_missing".into())
    );
    // Another call's token.
    let stolen = signed_stream(&hark, 502, &[("hark_token", &token)]).await;
    assert_eq!(
        refused_with(&stolen).await,
        (Some(1008), "token_wrong_call".into())
    );
    // A token whose claims were changed (the numbers, say).
    let (head, tag) = token.rsplit_once('.').unwrap();
    let (v, payload) = head.split_once('.').unwrap();
    // Change the last character of the claims (base64url: ASCII).
    let forged_payload = match payload.strip_suffix('A') {
        Some(rest) => format!("{rest}B"),
        None => format!("{}A", &payload[..payload.len() - 1]),
    };
    let forged = format!("{v}.{forged_payload}.{tag}");
    let forged = signed_stream(&hark, 500, &[("hark_token", &forged)]).await;
    assert_eq!(
        refused_with(&forged).await,
        (Some(1008), "token_signature".into())
    );

    // The right token: the call runs, and its numbers are the webhook's,
    // whatever the stream's own parameters claim.
    let caller = signed_stream(
        &hark,
        500,
        &[("hark_token", &token), ("from", "+19990000000")],
    )
    .await;
    assert!(caller.wait_idle(QUIET, GREETING).await, "{}", hark.logs());
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(500)), |c| {
            c["end_reason"] == "stop"
        })
        .await;
    assert_eq!(call["from"], "+14155550103", "{call}");
    assert_eq!(call["to"], "+14155550106", "{call}");
    let m = hark.metrics().await;
    assert_eq!(
        m.get("hark_calls_rejected_total{reason=\"bad_token\"}"),
        3.0
    );
    // Refused streams leave no call on record.
    let (_, page) = api.get("/api/v1/calls").await;
    assert_eq!(page["total"], 1, "{page}");
}

#[tokio::test]
async fn an_expired_stream_token_is_refused() {
    let node = Node::sqlite();
    let hark = node.start(&[
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("HARK_STREAM_TOKEN_TTL_SECS", "1"),
    ]);
    let token = webhook_token(&hark, &sid(510)).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = signed_stream(&hark, 510, &[("hark_token", &token)]).await;
    assert_eq!(
        refused_with(&late).await,
        (Some(1008), "token_expired".into())
    );
}

#[tokio::test]
async fn postgres_nodes_need_a_shared_stream_token_key() {
    let node = Node::postgres().await;
    let run = |key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hark"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("HARK_DATA_DIR", &node.data)
            .env("HARK_DATABASE_URL", &node.db)
            .env_remove("HARK_STREAM_TOKEN_KEY");
        if let Some(k) = key {
            cmd.env("HARK_STREAM_TOKEN_KEY", k);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(None);
    assert!(!ok);
    assert!(
        err.contains("HARK_STREAM_TOKEN_KEY is required with PostgreSQL"),
        "{err}"
    );
    let (ok, err) = run(Some("too short"));
    assert!(!ok);
    assert!(
        err.contains("HARK_STREAM_TOKEN_KEY must be at least 32 bytes"),
        "{err}"
    );
    // With a key it serves (and several nodes share it).
    let hark = node.start(&[]);
    assert!(hark.banner().contains("key from HARK_STREAM_TOKEN_KEY"));
}

#[tokio::test]
async fn a_second_live_stream_of_a_call_is_refused_and_a_later_one_continues_its_record() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start(&[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let first = hark.caller(520).await;
    assert!(first.wait_idle(QUIET, GREETING).await);
    let started = tokio::time::Instant::now();
    // Twilio (or a replay) opens a second socket for the live call.
    let second = hark.caller(520).await;
    assert_eq!(
        refused_with(&second).await,
        (Some(1008), "duplicate_call".into())
    );
    assert_eq!(
        hark.metrics()
            .await
            .get("hark_calls_rejected_total{reason=\"duplicate_call\"}"),
        1.0
    );
    // The first goes on undisturbed.
    let asked = first.say(speech("order")).await.unwrap();
    assert!(
        first
            .wait_media_since(asked.ended, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(first.wait_idle(QUIET, Duration::from_secs(20)).await);
    first.hangup();
    first.wait_closed(Duration::from_secs(10)).await;
    assert!(started.elapsed() > Duration::ZERO);
    // The call comes back on a new stream later (after a transfer attempt).
    let back = hark.caller(520).await;
    assert!(back.wait_idle(QUIET, GREETING).await, "{}", hark.logs());
    back.hangup();
    back.wait_closed(Duration::from_secs(10)).await;
    let path = format!("/api/v1/calls/{}/transcript", sid(520));
    let t = api
        .wait(&path, |t| {
            t["turns"].as_array().is_some_and(|turns| turns.len() == 4)
        })
        .await;
    let seqs: Vec<i64> = t["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["seq"].as_i64().unwrap())
        .collect();
    // Both streams' turns are kept, the second's numbered after the first's.
    assert_eq!(seqs, [0, 1, 2, 1_000_000], "{t}");
}

#[tokio::test]
async fn a_replayed_webhook_cannot_rewrite_a_call_on_record() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start(&[("HARK_CALLER_CALLS_PER_HOUR", "1")]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let params = [
        ("CallSid", sid(530)),
        ("From", "+14155550103".to_owned()),
        ("To", "+14155550106".to_owned()),
    ];
    let post = || {
        hark.http()
            .post(hark.url("/twilio/voice"))
            .form(&params)
            .send()
    };
    assert!(
        post()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("<Connect>")
    );
    let caller = hark.caller(530).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    // The same webhook again, while the call is live: over the caller's
    // limit, so <Reject/>, but the live call's record is untouched.
    assert!(
        post()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("<Reject")
    );
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let path = format!("/api/v1/calls/{}", sid(530));
    let call = api.wait(&path, |c| c["end_reason"] == "stop").await;
    // And again once it is over.
    assert!(
        post()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("<Reject")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, after) = api.get(&path).await;
    assert_eq!(after["end_reason"], "stop", "{after}");
    assert_eq!(after["started_at"], call["started_at"], "{after}");
    assert_eq!(after["stream_sid"], call["stream_sid"], "{after}");
    assert_eq!(
        hark.metrics()
            .await
            .get("hark_calls_rejected_total{reason=\"rate_limited\"}"),
        2.0
    );
}

/// Callers who withhold their number are nobody in particular: they share
/// no attempt limit (one anonymous caller cannot lock out the others) and
/// are never matched against the blocklist.
#[tokio::test]
async fn callers_with_withheld_numbers_share_no_attempt_limit() {
    let hark = Hark::start(&[("HARK_CALLER_CALLS_PER_HOUR", "1")]);
    for (i, from) in ["anonymous", "+266696687", "", "Restricted", "+266696687"]
        .iter()
        .enumerate()
    {
        let xml = hark
            .http()
            .post(hark.url("/twilio/voice"))
            .form(&[("CallSid", sid(540 + i as u64).as_str()), ("From", from)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(xml.contains("<Connect>"), "{from:?}: {xml}");
    }
    // A real number still has its limit.
    let post = |n: u64| {
        hark.http()
            .post(hark.url("/twilio/voice"))
            .form(&[("CallSid", sid(n)), ("From", "+14155550109".to_owned())])
            .send()
    };
    assert!(
        post(550)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("<Connect>")
    );
    assert!(
        post(551)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("<Reject")
    );
}
