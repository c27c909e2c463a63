//! The server around the calls: webhook, readiness, limits, policy errors, shutdown.

use std::process::Command;
use std::time::Duration;

use crate::support::{GREETING, Hark, QUIET, repo_path};

#[tokio::test]
async fn voice_webhook_answers_connect_stream_twiml() {
    let hark = Hark::start(&[]);
    let form = [
        ("CallSid", "CA123"),
        ("From", "+14155550103"),
        ("To", "+14155550106"),
        ("Direction", "inbound"),
    ];
    let res = hark
        .http()
        .post(hark.url("/twilio/voice"))
        .header("Host", "agent.example.com")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let xml = res.text().await.unwrap();
    assert!(
        xml.contains(r#"<Connect><Stream url="wss://agent.example.com/twilio/media">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="policy" value="e2e"/>"#),
        "{xml}"
    );
    // The call's data travels in a signed stream token, not as parameters
    // a stream could make up.
    let token = xml
        .split(r#"<Parameter name="hark_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no stream token: {xml}"));
    assert!(token.starts_with("v1."), "{token}");
    assert!(!xml.contains(r#"name="from""#), "{xml}");
    assert!(
        !xml.contains("/twilio/media?"),
        "Twilio drops query strings: {xml}"
    );

    let configured = Hark::start(&[("HARK_PUBLIC_HOST", "hark.example.net")]);
    let xml = configured
        .http()
        .post(configured.url("/twilio/voice"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        xml.contains(r#"url="wss://hark.example.net/twilio/media""#),
        "{xml}"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_share_the_listener() {
    let hark = Hark::start(&[]);
    let get = |p: &str| hark.http().get(hark.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "ready");
    let llm = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "llm")
        .unwrap();
    assert_eq!(llm["simulated"], true);
    let m = hark.metrics().await;
    for series in [
        "hark_calls_active",
        "hark_calls_total",
        "hark_barge_ins_total",
        "hark_media_frames_sent_total",
    ] {
        assert!(m.has(series), "{series} missing before the first call");
    }
}

#[tokio::test]
async fn max_calls_is_enforced_with_503() {
    let hark = Hark::start(&[("HARK_MAX_CALLS", "1")]);
    let _first = hark.caller(30).await;
    let second = tokio_tungstenite::connect_async(hark.media_url()).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
}

#[test]
fn an_invalid_policy_stops_serve_and_names_every_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &repo_path("tests/policies/bad.toml"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "name",
        "vad.onset_ms",
        "vad.endpointing_ms",
        "barge_in.min_speech_ms",
        "sim.tts.real_time_factor",
    ] {
        assert!(
            err.contains(&format!("{field}:")),
            "{field} not reported:\n{err}"
        );
    }
    let check = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "policy",
            "check",
            &repo_path("policies/default.toml"),
            &repo_path("tests/policies/bad.toml"),
        ])
        .output()
        .unwrap();
    assert!(!check.status.success());
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("default.toml: ok"), "{text}");
    // Every error with its field path and its line.
    for line in [
        "name: \"bad one\" may only use letters, digits, '-' and '_' (line 2)",
        "vad.onset_ms: 0 is outside 20..=1000 (line 4)",
        "vad.endpointing_ms: 20 is outside 100..=5000 (line 5)",
        "barge_in.min_speech_ms: 5000 is outside 20..=2000 (line 7)",
        "sim.tts.real_time_factor: -2 is outside 0..=10 (line 9)",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}

#[test]
fn a_bad_environment_override_stops_serve_with_its_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HARK_MAX_CALS", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HARK_MAX_CALS"), "{err}");
}

#[tokio::test]
async fn sigterm_drains_then_ends_calls_with_a_goodbye() {
    let mut hark = Hark::start(&[("HARK_SHUTDOWN_GRACE_SECS", "2")]);
    let caller = hark.caller(40).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let kill = Command::new("kill")
        .args(["-TERM", &hark.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let signalled = tokio::time::Instant::now();
    // Draining: not ready, no new calls, the call in progress goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hark.http()
            .get(hark.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    match tokio_tungstenite::connect_async(hark.media_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 503),
        other => panic!("new call during drain: {other:?}"),
    }
    assert!(caller.state().closed.is_none());
    // After the grace period the call hears the goodbye and is closed.
    let (code, reason) = caller
        .wait_closed(Duration::from_secs(20))
        .await
        .expect("call not ended");
    assert_eq!((code, reason.as_str()), (Some(1000), "shutdown"));
    {
        let st = caller.state();
        let goodbye = st
            .first_media_since(signalled + Duration::from_secs(2))
            .expect("no goodbye audio");
        let audio = st.audio_since(goodbye);
        assert!(
            audio > Duration::from_secs(2),
            "goodbye too short: {audio:?}"
        );
    }
    let code = hark.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{}", hark.logs());
}

/// Every metric the Grafana dashboards chart is one Hark exports (named in
/// the source as a metric), and each query follows the node selector.
#[test]
fn dashboards_chart_only_metrics_hark_exports() {
    let mut source = String::new();
    for dir in ["actors/src", "runtime/src"] {
        let mut stack = vec![std::path::PathBuf::from(repo_path(dir))];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    source.push_str(&std::fs::read_to_string(p).unwrap());
                }
            }
        }
    }
    let mut dashboards = 0;
    for e in std::fs::read_dir(repo_path("dashboards"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        dashboards += 1;
        let mut exprs = Vec::new();
        for panel in doc["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(t["expr"].as_str().unwrap().to_owned());
            }
        }
        assert!(exprs.len() > 10, "{:?}", e.path());
        for expr in &exprs {
            assert!(expr.contains(r#"instance=~"$instance""#), "{expr}");
            let mut rest = expr.as_str();
            while let Some(i) = rest.find("hark_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                assert!(
                    source.contains(&format!("\"{base}\"")),
                    "{base} (in {expr}) is not a metric Hark exports"
                );
            }
        }
    }
    assert!(dashboards >= 1);
}
