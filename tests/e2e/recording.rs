//! Recording through `hark serve` with real speech: a call recorded after
//! its notice decodes to two channels of the call's length, the caller's
//! speech in the caller channel and the bot's in the bot channel where they
//! were heard, the bot falling silent at a `clear`; a sensitive slot's
//! stretch is silent; a declined consent leaves nothing anywhere; a
//! storage outage (S3 on moto behind a proxy we cut) and a restart lose no
//! recording; `Range` on the encrypted object; roles and audit; erasure
//! per person and per call; retention.

use std::time::Duration;

use tokio::time::Instant;

use hark_runtime::recordings::opus;
use serde_json::Value;

use crate::access::{signed_stream, voice_webhook};
use crate::policies::{example, serve_signed, sid, with_script};
use crate::records::{Api, Node, Proxy, TOKEN};
use crate::support::{GREETING, Hark, QUIET, repo_path, speech, temp_dir};

const RATE: f64 = 8000.0;

fn recorded_policy() -> String {
    repo_path("tests/policies/recorded.toml")
}

/// The e2e policy (no sensitive slot), recorded after a notice.
fn recorded_e2e() -> String {
    let text = std::fs::read_to_string(repo_path("tests/policies/e2e.toml")).unwrap();
    let text = text.replacen(
        "greeting = ",
        "recording = \"always\"\nrecording_notice = \"This call is recorded.\"\ngreeting = ",
        1,
    );
    let file = temp_dir("hark-rec-policy").join("recorded-e2e.toml");
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// RMS of a stretch of a channel, `from`..`to` seconds.
fn rms(ch: &[i16], from: f64, to: f64) -> f64 {
    let a = ((from.max(0.0)) * RATE) as usize;
    let b = ((to * RATE) as usize).min(ch.len());
    if b <= a {
        return 0.0;
    }
    let s: f64 = ch[a..b].iter().map(|&x| (x as f64).powi(2)).sum();
    (s / (b - a) as f64).sqrt()
}

/// Where sound starts in `ch` at or after `from` seconds (10 ms windows).
fn onset(ch: &[i16], from: f64) -> Option<f64> {
    let mut t = from;
    while t * RATE < ch.len() as f64 {
        if rms(ch, t, t + 0.01) > 300.0 {
            return Some(t);
        }
        t += 0.01;
    }
    None
}

/// `GET` a call's recording with optional headers: status, headers, body.
async fn fetch(
    hark: &Hark,
    token: &str,
    sid: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = hark
        .http()
        .get(hark.url(&format!("/api/v1/calls/{sid}/recording")))
        .bearer_auth(token);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let res = req.send().await.unwrap();
    let code = res.status().as_u16();
    let headers = res.headers().clone();
    (code, headers, res.bytes().await.unwrap().to_vec())
}

/// Waits until the recording can be fetched whole.
async fn wait_recording(hark: &Hark, token: &str, sid: &str) -> Vec<u8> {
    for _ in 0..300 {
        let (code, _, body) = fetch(hark, token, sid, None).await;
        if code == 200 {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no recording for {sid}\n{}", hark.logs());
}

fn decode(ogg: &[u8]) -> opus::Decoded {
    opus::decode(std::io::Cursor::new(ogg.to_vec())).expect("a valid Ogg Opus recording")
}

/// `opusinfo` reads the file as two channels.
fn opusinfo(ogg: &[u8]) -> String {
    let file = temp_dir("hark-opusinfo").join("rec.opus");
    std::fs::write(&file, ogg).unwrap();
    let out = std::process::Command::new("opusinfo")
        .arg(&file)
        .output()
        .expect("opusinfo (tests/services.sh installs opus-tools)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Channels: 2"), "{text}");
    text
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_both_channels_as_heard_and_falls_silent_at_a_clear() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let agent = node.token("agent", "desk");
    let viewer = node.token("viewer", "watcher");
    let hark = node.start_with_policy(&recorded_e2e(), &[]);
    let api = Api {
        hark: &hark,
        token: admin.clone(),
    };
    let caller = hark.caller(300).await;
    let t0 = caller.connected_at();
    assert!(
        caller.wait_idle(QUIET, GREETING).await,
        "no notice and greeting"
    );
    // A question; then talking over the bot's answer: a barge-in, a clear.
    let asked = caller.say(speech("order")).await.unwrap();
    let reply = caller
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut_in = caller.say(speech("interrupt")).await.unwrap();
    let after = caller
        .wait_media_since(cut_in.ended, Duration::from_secs(8))
        .await
        .expect("a reply to the interruption");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    let clear = *caller
        .state()
        .clears
        .iter()
        .find(|c| **c > reply)
        .expect("the barge-in cleared the bot's audio");
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let sid = sid(300);

    let ogg = wait_recording(&hark, &admin, &sid).await;
    let rec = decode(&ogg);
    opusinfo(&ogg);
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["end_reason"] == "stop"
        })
        .await;
    // Two channels, each as long as the call (within 1%).
    let secs = rec.caller.len() as f64 / RATE;
    let call_secs = call["duration_ms"].as_f64().unwrap() / 1000.0;
    assert_eq!(rec.caller.len(), rec.bot.len());
    assert!(
        (secs - call_secs).abs() <= call_secs * 0.01,
        "recording {secs:.3} s, call {call_secs:.3} s"
    );
    // The recording's clock against the caller's: the bot's first sound.
    let rel = |t: Instant| t.duration_since(t0).as_secs_f64();
    let first_heard = rel(caller.state().first_media_since(t0).unwrap());
    let first_recorded = onset(&rec.bot, 0.0).expect("the notice is in the bot channel");
    let offset = first_recorded - first_heard;
    assert!(offset.abs() < 0.3, "clocks {offset:.3} s apart");
    let at = |t: Instant| rel(t) + offset;

    // The caller's words in the caller channel, the bot silent meanwhile.
    let (s, e) = (at(asked.started) + 0.1, at(asked.ended) - 0.1);
    assert!(
        rms(&rec.caller, s, e) > 500.0,
        "caller speech {:.0}",
        rms(&rec.caller, s, e)
    );
    assert!(
        rms(&rec.bot, s, e) < 50.0,
        "bot during caller speech {:.0}",
        rms(&rec.bot, s, e)
    );
    // The caller channel is quiet while the greeting plays.
    assert!(rms(&rec.caller, first_recorded + 0.1, first_recorded + 0.6) < 50.0);
    // The bot's answer in the bot channel until the clear; nothing after it
    // until the next answer.
    let (rs, c) = (at(reply) + 0.1, at(clear));
    assert!(
        rms(&rec.bot, rs, c - 0.1) > 300.0,
        "bot answer {:.0}",
        rms(&rec.bot, rs, c - 0.1)
    );
    let next = at(after);
    assert!(
        next - c > 0.4,
        "the next answer came {:.3} s after the clear",
        next - c
    );
    assert!(
        rms(&rec.bot, c + 0.15, next - 0.1) < 50.0,
        "bot audio after the clear: {:.0}",
        rms(&rec.bot, c + 0.15, next - 0.1)
    );

    // Range: a browser seeking into the (encrypted) object.
    let len = ogg.len();
    let (code, h, part) = fetch(&hark, &agent, &sid, Some("bytes=100-70099")).await;
    assert_eq!(code, 206);
    assert_eq!(part, ogg[100..70_100.min(len)]);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes 100-{}/{len}", 70_099.min(len - 1))
    );
    assert_eq!(h["content-type"], "audio/ogg");
    assert_eq!(h["accept-ranges"], "bytes");
    let (code, _, tail) = fetch(&hark, &agent, &sid, Some("bytes=-10")).await;
    assert_eq!((code, tail.as_slice()), (206, &ogg[len - 10..]));
    let (code, h, _) = fetch(&hark, &agent, &sid, Some(&format!("bytes={len}-"))).await;
    assert_eq!(code, 416);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes */{len}")
    );
    // Roles: a viewer cannot listen; nobody without a token can.
    assert_eq!(fetch(&hark, &viewer, &sid, None).await.0, 403);
    assert_eq!(fetch(&hark, "nope", &sid, None).await.0, 401);
    assert_eq!(fetch(&hark, &admin, "CA399", None).await.0, 404);
    assert_eq!(fetch(&hark, &admin, "bad/sid", None).await.0, 404);
    // Every read is audited.
    let (_, audit) = api.get("/api/v1/audit?limit=100").await;
    let reads = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read_recording" && e["target"] == sid.as_str())
        .count();
    assert!(reads >= 3, "{audit}");
    // At rest it is sealed, not an Ogg file.
    let objects = files_under(&node.data.join("recordings/objects"));
    assert_eq!(objects.len(), 1, "{objects:?}");
    let at_rest = std::fs::read(&objects[0]).unwrap();
    assert!(at_rest.starts_with(b"HRKSEAL1"));
    assert!(!at_rest.windows(4).any(|w| w == b"OggS"));
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_recordings_stored_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_slot_is_silent_in_both_channels() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start_with_policy(&recorded_policy(), &[]);
    let caller = hark.caller(310).await;
    let t0 = caller.connected_at();
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let mut said = Vec::new();
    // "I want to pay by card" → the bot asks for it (sensitive from here);
    // the number → recorded by the bot (sensitive no more); "that is all".
    for _ in 0..3 {
        let s = caller.say(speech("order")).await.unwrap();
        caller
            .wait_media_since(s.ended, Duration::from_secs(8))
            .await
            .unwrap_or_else(|| panic!("no answer\n{}", hark.logs()));
        assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
        said.push(s);
    }
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let sid = sid(310);
    let rec = decode(&wait_recording(&hark, &admin, &sid).await);
    let rel = |t: Instant| t.duration_since(t0).as_secs_f64();
    let first_heard = rel(caller.state().first_media_since(t0).unwrap());
    let offset = onset(&rec.bot, 0.0).unwrap() - first_heard;
    let at = |t: Instant| rel(t) + offset;
    let speech_rms = |i: usize| {
        rms(
            &rec.caller,
            at(said[i].started) + 0.1,
            at(said[i].ended) - 0.1,
        )
    };
    assert!(speech_rms(0) > 500.0, "before: {:.0}", speech_rms(0));
    assert!(
        speech_rms(1) < 50.0,
        "the card number was recorded: {:.0}",
        speech_rms(1)
    );
    assert!(speech_rms(2) > 500.0, "after: {:.0}", speech_rms(2));
    // The bot's words between asking and recording the number are silent too.
    assert!(rms(&rec.bot, at(said[0].ended) + 0.05, at(said[1].ended)) < 50.0);
    let logs = hark.logs();
    assert!(logs.contains("sensitive input"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_consent_leaves_no_object_and_no_file_and_a_yes_records_from_then() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-rec-consent");
    example(&dir, "consent-first.toml", "consent-first.toml", |t| {
        with_script(t, "[\"Yes, that's fine\", \"My claim reference is C-778\"]")
    });
    example(&dir, "consent-first.toml", "consent-no.toml", |t| {
        with_script(t, "[\"No thanks\", \"My claim reference is C-778\"]")
            .replace("name = \"consent-first\"", "name = \"consent-no\"")
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin.clone(),
    };
    for (n, policy) in [(320u64, "consent-no"), (321, "consent-first")] {
        let twiml = voice_webhook(
            &hark,
            &sid(n),
            "+14155550120",
            "+14155550199",
            &format!("?policy={policy}"),
        )
        .await;
        let token = crate::access::token_in(&twiml);
        let caller = signed_stream(&hark, n, &[("hark_token", &token)]).await;
        assert!(
            caller.wait_idle(QUIET, GREETING).await,
            "no consent question"
        );
        for _ in 0..2 {
            let said = caller.say(speech("yes")).await.unwrap();
            caller
                .wait_media_since(said.ended, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no answer\n{}", hark.logs()));
            assert!(caller.wait_idle(QUIET, Duration::from_secs(30)).await);
        }
        caller.hangup();
        caller.wait_closed(Duration::from_secs(10)).await;
    }
    let yes = wait_recording(&hark, &admin, &sid(321)).await;
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(321)), |c| {
            c["end_reason"] == "stop"
        })
        .await;
    // Recorded from the yes: shorter than the call by the question at least.
    let secs = decode(&yes).caller.len() as f64 / RATE;
    let call_secs = call["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        secs < call_secs - 2.0,
        "recording {secs:.2} s of a {call_secs:.2} s call"
    );
    // The no: not a file, not an object, not a row.
    let no = sid(320);
    api.wait(&format!("/api/v1/calls/{no}"), |c| {
        c["end_reason"] == "stop"
    })
    .await;
    let (code, _, _) = fetch(&hark, &admin, &no, None).await;
    assert_eq!(code, 404);
    let files = files_under(&node.data.join("recordings"));
    assert!(files.iter().all(|f| !f.contains(&no)), "{files:?}");
    assert_eq!(files.len(), 1, "only the yes's object: {files:?}");
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_recordings_started_total", &[]), 1.0);
}

/// A moto S3 server on a free port, killed when dropped.
struct S3 {
    child: std::process::Child,
    addr: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    async fn start(bucket: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port_s = port.to_string();
        let args = ["-H", "127.0.0.1", "-p", &port_s];
        let spawn = |cmd: &str, pre: &[&str]| {
            std::process::Command::new(cmd)
                .args(pre)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        };
        // The console script, else the module (a pyenv without its shim).
        let child = spawn("moto_server", &[])
            .or_else(|_| spawn("python3", &["-m", "moto.server"]))
            .expect("moto[server] (tests/services.sh installs it)");
        let s3 = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http
                .put(format!("http://{}/{bucket}", s3.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return s3;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not come up");
    }

    /// The bucket's object keys.
    async fn keys(&self, bucket: &str) -> Vec<String> {
        let xml = reqwest::get(format!("http://{}/{bucket}?list-type=2", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HARK_RECORDINGS__STORAGE", "s3".into()),
        ("HARK_RECORDINGS__BUCKET", "calls".into()),
        ("HARK_RECORDINGS__PREFIX", "rec/".into()),
        ("HARK_RECORDINGS__ENDPOINT", format!("http://{endpoint}")),
        ("HARK_RECORDINGS__ALLOW_HTTP", "true".into()),
        ("HARK_RECORDINGS__MAX_RETRY_SECS", "1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

async fn short_call(hark: &Hark, n: u64) {
    let caller = hark.caller(n).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let said = caller.say(speech("thanks")).await.unwrap();
    caller
        .wait_media_since(said.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_wait_out_a_storage_outage_and_a_restart_and_none_is_lost() {
    let s3 = S3::start("calls").await;
    let proxy = Proxy::start(&s3.addr).await;
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let env = s3_env(&proxy.addr());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Storage down for part of a run: the recording waits, then goes up.
    proxy.cut();
    let mut first = node.start_with_policy(&recorded_policy(), &env);
    short_call(&first, 330).await;
    // While it waits it can be played from this node.
    let waiting = wait_recording(&first, &admin, &sid(330)).await;
    assert!(s3.keys("calls").await.is_empty());
    let pending = files_under(&node.data.join("recordings/pending"));
    assert_eq!(
        pending.iter().filter(|f| f.ends_with(".sealed")).count(),
        1,
        "{pending:?}"
    );
    proxy.restore();
    for _ in 0..100 {
        if s3.keys("calls").await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s3.keys("calls").await,
        vec![format!("rec/{}.ogg.sealed", sid(330))]
    );

    // Down again, and the node restarts before it is back.
    proxy.cut();
    short_call(&first, 331).await;
    short_call(&first, 332).await;
    short_call(&first, 333).await;
    wait_recording(&first, &admin, &sid(333)).await;
    // Erasure reaches a recording still waiting for storage.
    let res = first
        .http()
        .delete(first.url(&format!("/api/v1/calls/{}/personal-data", sid(333))))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["recordings"], 1, "{body}");
    assert_eq!(fetch(&first, &admin, &sid(333), None).await.0, 404);
    std::process::Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(first.wait_exit(Duration::from_secs(40)).await, Some(0));
    drop(first);
    let pending = files_under(&node.data.join("recordings/pending"));
    assert_eq!(
        pending.iter().filter(|f| f.ends_with(".sealed")).count(),
        2,
        "{pending:?}"
    );
    assert!(
        pending.iter().all(|f| !f.contains(&sid(333))),
        "{pending:?}"
    );
    // Its object key waits to be deleted (storage is down): never forgotten.
    let deletions = std::fs::read_to_string(node.data.join("recordings/deletions.txt")).unwrap();
    assert!(deletions.contains(&sid(333)), "{deletions}");
    proxy.restore();
    let second = node.start_with_policy(&recorded_policy(), &env);
    for _ in 0..200 {
        if s3.keys("calls").await.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut keys = s3.keys("calls").await;
    keys.sort();
    assert_eq!(
        keys,
        [330, 331, 332]
            .map(|n| format!("rec/{}.ogg.sealed", sid(n)))
            .to_vec(),
        "{}",
        second.logs()
    );
    assert!(files_under(&node.data.join("recordings/pending")).is_empty());
    for _ in 0..100 {
        if !node.data.join("recordings/deletions.txt").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!node.data.join("recordings/deletions.txt").exists());
    // Stored on S3: the same bytes as while it waited, whole or by range;
    // the key id is in the object's metadata.
    let stored = wait_recording(&second, &admin, &sid(330)).await;
    assert_eq!(stored, waiting);
    let (code, _, part) = fetch(&second, &admin, &sid(330), Some("bytes=5000-5015")).await;
    assert_eq!((code, part.as_slice()), (206, &stored[5000..5016]));
    let head = reqwest::Client::new()
        .head(format!(
            "http://{}/calls/rec/{}.ogg.sealed",
            s3.addr,
            sid(331)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["x-amz-meta-hark-key-id"], "k1");
    for n in [331, 332] {
        decode(&wait_recording(&second, &admin, &sid(n)).await);
    }
}

async fn numbered_call(hark: &Hark, n: u64, from: &str) {
    let twiml = voice_webhook(hark, &sid(n), from, "+14155550199", "").await;
    let token = crate::access::token_in(&twiml);
    let caller = signed_stream(hark, n, &[("hark_token", &token)]).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let said = caller.say(speech("thanks")).await.unwrap();
    caller
        .wait_media_since(said.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    caller.dtmf('7');
    tokio::time::sleep(Duration::from_millis(300)).await;
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
}

async fn delete(hark: &Hark, token: &str, path: &str) -> (u16, Value) {
    let res = hark
        .http()
        .delete(hark.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_per_person_and_per_call_and_retention_remove_objects_and_rows() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let agent = node.token("agent", "desk");
    let person = "+14155550142";
    let hark = node.start_with_policy(&recorded_policy(), &[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let api = Api {
        hark: &hark,
        token: admin.clone(),
    };
    numbered_call(&hark, 340, person).await;
    numbered_call(&hark, 341, person).await;
    numbered_call(&hark, 342, "+14155550177").await;
    numbered_call(&hark, 343, "+14155550178").await;
    for n in 340..344 {
        wait_recording(&hark, &admin, &sid(n)).await;
    }
    let objects = node.data.join("recordings/objects");
    assert_eq!(files_under(&objects).len(), 4);
    // The person is also blocked: that stays.
    let res = hark
        .http()
        .post(hark.url("/api/v1/blocklist"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "number": person, "reason": "asked not to be called" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    // Bad input and the wrong role.
    assert_eq!(
        delete(&hark, &admin, "/api/v1/personal-data?number=12345")
            .await
            .0,
        400
    );
    assert_eq!(delete(&hark, &admin, "/api/v1/personal-data").await.0, 400);
    assert_eq!(
        delete(&hark, &agent, "/api/v1/personal-data?number=%2B14155550142")
            .await
            .0,
        403
    );

    // A `+` left unencoded reads as a space: still the same person.
    let (code, body) = delete(&hark, &admin, "/api/v1/personal-data?number=+14155550142").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["calls"], 2, "{body}");
    assert_eq!(body["recordings"], 2, "{body}");
    assert!(body["turns"].as_u64().unwrap() >= 4, "{body}");
    assert!(body["events"].as_u64().unwrap() >= 2, "DTMF: {body}");
    for n in [340, 341] {
        assert_eq!(fetch(&hark, &admin, &sid(n), None).await.0, 404);
        let (_, call) = api.get(&format!("/api/v1/calls/{}", sid(n))).await;
        assert_ne!(call["from"], person, "{call}");
        let (_, t) = api
            .get(&format!("/api/v1/calls/{}/transcript", sid(n)))
            .await;
        assert!(
            t["turns"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["text"].as_str().unwrap_or("").is_empty()),
            "{t}"
        );
        let dtmf: Vec<&Value> = call["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "dtmf")
            .collect();
        assert!(dtmf.iter().all(|e| e["detail"] == ""), "{dtmf:?}");
    }
    assert_eq!(files_under(&objects).len(), 2);
    let (_, blocked) = api.get("/api/v1/blocklist").await;
    assert!(
        blocked.to_string().contains("550142") || blocked.to_string().contains("42"),
        "{blocked}"
    );
    let (_, audit) = api.get("/api/v1/audit?limit=100").await;
    let erasure = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "erase_personal_data")
        .expect("an audit row")
        .to_string();
    assert!(!erasure.contains("4155550142"), "{erasure}");
    assert!(erasure.contains("2 calls"), "{erasure}");

    // One call.
    assert_eq!(
        delete(&hark, &admin, "/api/v1/calls/CAnope/personal-data")
            .await
            .0,
        404
    );
    let (code, body) = delete(
        &hark,
        &admin,
        &format!("/api/v1/calls/{}/personal-data", sid(342)),
    )
    .await;
    assert_eq!(
        (code, body["recordings"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(fetch(&hark, &admin, &sid(342), None).await.0, 404);
    assert_eq!(files_under(&objects).len(), 1);
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_erasures_total", &[("scope", "person")]), 1.0);
    assert_eq!(m.sum("hark_erasures_total", &[("scope", "call")]), 1.0);

    // Retention: the last recording made 100 days old; the purge at the
    // next start deletes the object and marks the row.
    drop(hark);
    let db = node.data.join("hark.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE recordings SET started_at = started_at - 100*86400000 WHERE call_sid = ?', (sys.argv[2],)); c.commit()",
            db.to_str().unwrap(),
            &sid(343),
        ])
        .status()
        .unwrap();
    assert!(out.success());
    let hark = node.start_with_policy(
        &recorded_policy(),
        &[("HARK_RECORDING_RETENTION_DAYS", "30")],
    );
    for _ in 0..100 {
        if files_under(&objects).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files_under(&objects).is_empty(), "{}", hark.logs());
    assert_eq!(fetch(&hark, &admin, &sid(343), None).await.0, 404);
}
