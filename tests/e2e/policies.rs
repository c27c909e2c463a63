//! Many policies on one node, through `hark serve` with real speech: calls
//! routed by the number they called (or named by an outbound call's webhook
//! URL), each record naming its policy and version; slots filled to
//! `qualified`; a callback window stored and a sensitive slot masked; a
//! Hindi policy end to end; hot reload of the folder under live calls.

use std::path::Path;
use std::time::Duration;

use hark_loadtest::Caller;
use serde_json::Value;

use crate::access::{signed_stream, token_in, voice_webhook, webhook_token_to};
use crate::records::{Api, Node, TOKEN};
use crate::support::{GREETING, Hark, QUIET, repo_path, speech, temp_dir};

pub(crate) fn sid(n: u64) -> String {
    format!("CA{n:032x}")
}

/// A call as Twilio makes it: the signed webhook for a call to `to` (at
/// `query`), then the signed stream with the token it handed out.
pub(crate) async fn call_to(hark: &Hark, n: u64, to: &str, query: &str) -> Caller {
    let token = webhook_token_to(hark, &sid(n), to, query).await;
    let caller = signed_stream(hark, n, &[("hark_token", &token)]).await;
    assert!(caller.wait_idle(QUIET, GREETING).await, "no greeting");
    caller
}

/// The caller answers `turns` times, each time waiting for the bot's reply.
async fn converse(caller: &Caller, turns: usize, hark: &Hark) {
    for turn in 0..turns {
        let said = caller.say(speech("yes")).await.unwrap();
        caller
            .wait_media_since(said.ended, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no reply to turn {turn}:\n{}", hark.logs()));
        assert!(caller.wait_idle(QUIET, Duration::from_secs(30)).await);
    }
}

/// `text` with its simulated caller saying `lines` (its `script = [...]`).
pub(crate) fn with_script(text: String, lines: &str) -> String {
    let script = format!("script = {lines}");
    text.lines()
        .map(|l| {
            if l.starts_with("script = ") {
                script.as_str()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `hark serve --policies DIR ARGS…` on `node`, with Twilio signatures on.
pub(crate) fn serve_signed(node: &Node, dir: &Path, args: &[&str]) -> Hark {
    let mut env = node.env();
    env.push(("TWILIO_AUTH_TOKEN".into(), TOKEN.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = dir.to_str().unwrap_or_default();
    let args: Vec<&str> = ["--policies", dir].iter().chain(args).copied().collect();
    Hark::start_with(&args, &env)
}

/// An example policy from `policies/`, with quicker simulated speech.
pub(crate) fn example(dir: &Path, file: &str, to: &str, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(repo_path(&format!("policies/{file}"))).unwrap();
    let quick = "\n[sim.tts]\nfirst_byte_ms = 20\nms_per_char = 10\n";
    std::fs::write(dir.join(to), edit(text) + quick).unwrap();
}

#[tokio::test]
async fn calls_are_routed_by_number_or_name_and_end_with_their_policys_disposition() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-agents");
    for file in [
        "support-faq.toml",
        "lead-qualification.toml",
        "india-sales-ivr.toml",
    ] {
        example(&dir, file, file, |t| t);
    }
    // The same lead agent for a lead who is busy: gives a PAN, then asks
    // for a call back.
    example(&dir, "lead-qualification.toml", "lead-callback.toml", |t| {
        with_script(
            t.replace("name = \"lead-qualification\"", "name = \"lead-callback\""),
            "[\"My PAN is ABCDE1234F\", \"Please call me back tomorrow\"]",
        )
    });
    let config = temp_dir("hark-agents-config").join("hark.toml");
    std::fs::write(
        &config,
        "[routing]\ndefault = \"support-faq\"\n[routing.numbers]\n\"+1\" = \"lead-qualification\"\n\"+91\" = \"india-sales-ivr\"\n",
    )
    .unwrap();
    let hark = serve_signed(&node, &dir, &["--config", config.to_str().unwrap()]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let (code, list) = api.get("/api/v1/policies").await;
    assert_eq!(code, 200);
    let live: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["active"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        live,
        [
            "india-sales-ivr",
            "lead-callback",
            "lead-qualification",
            "support-faq"
        ],
        "{list}"
    );
    let lead = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lead-qualification");
    assert_eq!(lead.unwrap()["routes"], serde_json::json!(["+1"]));

    let (us, india, busy, other) = tokio::join!(
        async {
            let c = call_to(&hark, 801, "+14155550100", "").await;
            converse(&c, 4, &hark).await;
            c.hangup();
        },
        async {
            // Consent to record, consent to talk, the plan.
            let c = call_to(&hark, 802, "+919812345678", "").await;
            converse(&c, 3, &hark).await;
            c.hangup();
        },
        async {
            // An outbound call names its policy in the webhook URL.
            let c = call_to(&hark, 803, "+14155550100", "?policy=lead-callback").await;
            converse(&c, 2, &hark).await;
            c.hangup();
        },
        async {
            // A number no route matches gets the default.
            let c = call_to(&hark, 804, "+442071234567", "").await;
            c.hangup();
        },
    );
    let _ = (us, india, busy, other);
    let call = |n: u64| {
        let api = &api;
        async move {
            api.wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
                !c["ended_at"].is_null() && (n == 804 || !c["disposition"].is_null())
            })
            .await
        }
    };
    let us = call(801).await;
    assert_eq!(us["policy"], "lead-qualification", "{us}");
    assert_eq!(us["policy_version"], "1");
    assert_eq!(us["disposition"], "qualified", "{us}");
    assert_eq!(us["outcome"]["investment_type"], "mutual_funds", "{us}");
    assert_eq!(us["outcome"]["amount"], 500000, "{us}");
    let india = call(802).await;
    assert_eq!(india["policy"], "india-sales-ivr", "{india}");
    assert_eq!(india["disposition"], "qualified", "{india}");
    assert_eq!(india["outcome"]["plan"], "fibre_300", "{india}");
    let busy = call(803).await;
    assert_eq!(busy["policy"], "lead-callback", "{busy}");
    assert_eq!(busy["disposition"], "callback", "{busy}");
    assert_eq!(
        busy["callback_start"], "2099-01-15T10:00:00+05:30",
        "{busy}"
    );
    assert_eq!(busy["callback_end"], "2099-01-15T12:00:00+05:30", "{busy}");
    // Sensitive: masked for every role, admin included.
    assert_eq!(busy["outcome"]["pan"], "***", "{busy}");
    let other = call(804).await;
    assert_eq!(other["policy"], "support-faq", "{other}");
    // The Hindi transcript is stored whole.
    let (_, transcript) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(802)))
        .await;
    assert!(transcript.to_string().contains("प्रिया"), "{transcript}");
    // Filterable by disposition; a bad one is a 400 naming the field.
    let (_, page) = api.get("/api/v1/calls?disposition=qualified").await;
    let mut sids: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_sid"].as_str().unwrap())
        .collect();
    sids.sort_unstable();
    assert_eq!(sids, [sid(801), sid(802)], "{page}");
    let (_, page) = api.get("/api/v1/calls?disposition=callback").await;
    assert_eq!(page["total"], 1, "{page}");
    let (code, body) = api.get("/api/v1/calls?disposition=Not%20One").await;
    assert_eq!(code, 400);
    assert!(body.to_string().contains("disposition"), "{body}");
    let m = hark.metrics().await;
    assert_eq!(
        m.sum(
            "hark_call_dispositions_total",
            &[
                ("policy", "lead-qualification"),
                ("disposition", "qualified")
            ]
        ),
        1.0
    );
    // The sensitive value is in no log line above debug (where transcripts
    // are, when asked for), tool arguments and outcome included.
    let logs = hark.logs();
    let leaks: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ABCDE1234F") && !l.contains(" DEBUG "))
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// The policy a new call to `to` gets, from its record.
async fn policy_of_a_new_call(hark: &Hark, api: &Api<'_>, n: u64, to: &str) -> (String, String) {
    let c = call_to(hark, n, to, "").await;
    c.hangup();
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
            !c["policy"].is_null()
        })
        .await;
    (
        call["policy"].as_str().unwrap_or_default().to_owned(),
        call["policy_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn the_folder_is_watched_and_calls_in_progress_keep_their_version() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-watched");
    let e2e = std::fs::read_to_string(repo_path("tests/policies/e2e.toml")).unwrap();
    let named = |name: &str, version: &str| {
        e2e.replace(
            "name = \"e2e\"",
            &format!("name = \"{name}\"\nversion = \"{version}\""),
        )
    };
    std::fs::write(dir.join("alpha.toml"), named("alpha", "1")).unwrap();
    std::fs::write(dir.join("beta.toml"), named("beta", "1")).unwrap();
    let config = dir.join("hark.toml");
    std::fs::write(
        &config,
        "policy_watch_debounce_ms = 100\n[routing]\ndefault = \"alpha\"\n[routing.numbers]\n\"+44\" = \"beta\"\n",
    )
    .unwrap();
    // The config file sits in the folder too: not a policy, it is refused
    // and listed with its errors, never live.
    let hark = serve_signed(&node, &dir, &["--config", config.to_str().unwrap()]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let listed = |name: &'static str| {
        move |list: &Value| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|p| p["file"] == name))
        }
    };
    // A call in progress on beta v1.
    let live = call_to(&hark, 901, "+442071234567", "").await;

    // A valid change applies to calls that start after it.
    std::fs::write(dir.join("beta.toml"), named("beta", "2")).unwrap();
    api.wait("/api/v1/policies", |l| {
        l.as_array().is_some_and(|l| {
            l.iter()
                .any(|p| p["file"] == "beta.toml" && p["version"] == "2")
        })
    })
    .await;
    assert_eq!(
        policy_of_a_new_call(&hark, &api, 902, "+442071234567").await,
        ("beta".into(), "2".into())
    );
    // The call in progress goes on, on the version it started with.
    converse(&live, 1, &hark).await;

    // An invalid change is refused with its errors; version 2 stays live.
    std::fs::write(
        dir.join("beta.toml"),
        named("beta", "3").replace("endpointing_ms = 500", "endpointing_ms = 5"),
    )
    .unwrap();
    let list = api
        .wait("/api/v1/policies", |l| {
            l.as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["file"] == "beta.toml" && p["valid"] == false)
            })
        })
        .await;
    assert!(list.to_string().contains("vad.endpointing_ms"), "{list}");
    assert_eq!(
        policy_of_a_new_call(&hark, &api, 903, "+442071234567").await,
        ("beta".into(), "2".into())
    );

    // A removed file stops taking calls: they get the default.
    std::fs::remove_file(dir.join("beta.toml")).unwrap();
    api.wait("/api/v1/policies", |l| !listed("beta.toml")(l))
        .await;
    assert_eq!(
        policy_of_a_new_call(&hark, &api, 904, "+442071234567").await,
        ("alpha".into(), "1".into())
    );
    assert!(
        hark.logs()
            .contains("policy file removed: calls routed to it now get the default"),
        "{}",
        hark.logs()
    );
    converse(&live, 1, &hark).await;
    live.hangup();
    let first = api
        .wait(&format!("/api/v1/calls/{}", sid(901)), |c| {
            !c["ended_at"].is_null()
        })
        .await;
    assert_eq!(
        (&first["policy"], &first["policy_version"]),
        (&"beta".into(), &"1".into())
    );
    let m = hark.metrics().await;
    for (result, n) in [("applied", 1.0), ("invalid", 1.0), ("removed", 1.0)] {
        assert_eq!(
            m.sum("hark_policy_reloads_total", &[("result", result)]),
            n,
            "{result}"
        );
    }
}

/// `hark policy …` as AI Ops run it.
fn hark_policy(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("policy")
        .args(args)
        .env_remove("HARK_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_example_policies_pass_check() {
    let files: Vec<String> = [
        "support-faq",
        "lead-qualification",
        "india-sales-ivr",
        "consent-first",
        "default",
    ]
    .iter()
    .map(|p| repo_path(&format!("policies/{p}.toml")))
    .collect();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (code, out) = hark_policy(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(": ok (policy").count(), 5, "{out}");
}

#[test]
fn simulate_runs_a_hindi_script_through_the_call_and_prints_each_decision() {
    let dir = temp_dir("hark-simulate");
    let script = dir.join("hindi.txt");
    std::fs::write(
        &script,
        "# हिन्दी\nजी हाँ\nहाँ, बोलिए\ndtmf 1\nsilence 2s\nतीन सौ एमबीपीएस वाला प्लान\n",
    )
    .unwrap();
    let policy = repo_path("policies/india-sales-ivr.toml");
    let (code, out) = hark_policy(&[
        "simulate",
        &policy,
        "--sim",
        "--json",
        "--script",
        script.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let decisions: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = decisions
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    // The consent question comes first (its decision on record), then the
    // greeting, which says how to stop calls.
    assert_eq!(kinds.first(), Some(&"event"), "{out}");
    let bot: Vec<&str> = decisions
        .iter()
        .filter(|d| d["kind"] == "bot")
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert!(bot[0].contains("रिकॉर्ड की जा सकती है"), "{out}");
    assert!(bot[1].contains("स्टॉप"), "{out}");
    for kind in [
        "caller", "dtmf", "silence", "tool", "slot", "outcome", "ended",
    ] {
        assert!(kinds.contains(&kind), "no {kind}: {out}");
    }
    let outcome = decisions.iter().find(|d| d["kind"] == "outcome").unwrap();
    assert_eq!(outcome["disposition"], "qualified", "{out}");
    assert_eq!(outcome["slots"]["plan"], "fibre_300", "{out}");
    // Plain text for people.
    let (code, text) = hark_policy(&[
        "simulate",
        &policy,
        "--sim",
        "--script",
        script.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(
        text.contains("caller: हाँ, बोलिए") && text.contains("outcome: qualified"),
        "{text}"
    );
}

#[test]
fn simulate_refuses_a_bad_script_or_policy_with_the_line() {
    let dir = temp_dir("hark-simulate-bad");
    let script = dir.join("bad.txt");
    std::fs::write(&script, "hello\nsilence forever\n").unwrap();
    let policy = repo_path("policies/support-faq.toml");
    let (code, out) = hark_policy(&[
        "simulate",
        &policy,
        "--sim",
        "--script",
        script.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 2") && out.contains("not a duration"),
        "{out}"
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[outcome]\ndispositions = [\"qualified\"]\n",
    )
    .unwrap();
    let (code, out) = hark_policy(&["simulate", bad.to_str().unwrap(), "--sim"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("outcome.dispositions") && out.contains("(line 3)"),
        "{out}"
    );
}

#[tokio::test]
async fn simulate_without_sim_asks_the_policys_own_llm() {
    use crate::fakes::Fakes;
    use crate::fakes::openai::Reply;
    let fakes = Fakes::start().await;
    fakes.openai.reply(Reply::Text("We open at nine.".into()));
    fakes.openai.reply(Reply::Tool {
        text: "Noting that.".into(),
        name: "record_outcome".into(),
        arguments: r#"{"plan":"pro"}"#.into(),
    });
    let dir = temp_dir("hark-simulate-live");
    let script = dir.join("live.txt");
    std::fs::write(&script, "When are you open?\nThe pro plan, please\n").unwrap();
    let policy = repo_path("tests/policies/live.toml");
    let env = fakes.env();
    let script = script.to_str().unwrap().to_owned();
    // The fakes run on this runtime: wait for the child off it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["policy", "simulate", &policy, "--script", &script])
            .env_remove("HARK_LOG")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bot: We open at nine."), "{text}");
    assert!(text.contains("slot plan = \"pro\""), "{text}");
    // The model got the typed line as the caller's words, after the
    // policy's rendered system prompt.
    let requests = fakes.openai.chat_requests();
    let first = &requests[0]["messages"];
    assert!(
        first[0]["content"].as_str().unwrap().contains("आसान हिंदी"),
        "{first}"
    );
    let last = first
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&last["role"], &last["content"]),
        (&"user".into(), &"When are you open?".into()),
        "{first}"
    );
    // STT and TTS are text here: neither fake was asked.
    assert!(fakes.openai.shared.spoken.lock().unwrap().is_empty());
}

#[test]
fn simulate_reads_the_callers_lines_from_stdin() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "policy",
            "simulate",
            &repo_path("policies/consent-first.toml"),
            "--sim",
        ])
        .env_remove("HARK_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A bad line is reported and skipped; the call goes on.
    stdin
        .write_all(b"Yes\nsilence never\nMy claim reference is C-778\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a duration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("outcome: qualified"), "{text}");
    assert!(text.ends_with("ended: stop\n"), "{text}");
}

#[tokio::test]
async fn a_caller_who_swears_is_warned_then_the_call_ends_with_the_rules_goodbye() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-profanity");
    // The Hindi IVR warns once, then ends; its simulated caller swears twice.
    example(&dir, "india-sales-ivr.toml", "india-sales-ivr.toml", |t| {
        with_script(t, "[\"अरे हरामी\", \"तू चूतिया है\"]")
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let caller = call_to(&hark, 950, "+919812345678", "?policy=india-sales-ivr").await;
    converse(&caller, 1, &hark).await;
    let said = caller.say(speech("yes")).await.unwrap();
    let closed = caller.wait_closed(Duration::from_secs(20)).await;
    assert!(closed.is_some(), "the call did not end:\n{}", hark.logs());
    // "माफ़ कीजिए, भाषा के कारण मैं यह कॉल समाप्त कर रही हूँ। नमस्ते।" at 10 ms a character.
    assert!(
        caller.state().audio_since(said.ended) > Duration::from_millis(300),
        "no goodbye: {:?}",
        caller.state().audio_since(said.ended)
    );
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(950)), |c| {
            !c["ended_at"].is_null()
        })
        .await;
    assert_eq!(call["end_reason"], "profanity", "{call}");
    let details: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rule")
        .map(|e| e["detail"].as_str().unwrap())
        .filter(|d| d.starts_with("profanity"))
        .collect();
    assert_eq!(details, ["profanity: warned", "profanity: ended"], "{call}");
    let (_, transcript) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(950)))
        .await;
    let text = transcript.to_string();
    assert!(
        text.contains("शालीनता") && text.contains("समाप्त कर रही हूँ"),
        "{text}"
    );
    let m = hark.metrics().await;
    for action in ["warned", "ended"] {
        assert_eq!(
            m.sum(
                "hark_rule_decisions_total",
                &[("rule", "profanity"), ("action", action)]
            ),
            1.0
        );
    }
    assert_eq!(m.get("hark_calls_ended_total{reason=\"profanity\"}"), 1.0);
    // The words themselves are in no log line above debug.
    let logs = hark.logs();
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("हरामी") && !l.contains(" DEBUG ")),
        "{logs}"
    );
}

/// The consent-first agent's webhook for a call from `from`; the TwiML.
async fn voice_from(hark: &Hark, call_sid: &str, from: &str) -> String {
    voice_webhook(
        hark,
        call_sid,
        from,
        "+919812345678",
        "?policy=consent-first",
    )
    .await
}

#[tokio::test]
async fn a_caller_ended_for_profanity_is_blocked_for_a_while_and_a_withheld_one_never() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-profanity-block");
    example(&dir, "consent-first.toml", "consent-first.toml", |t| {
        with_script(t, "[\"you bastard\"]")
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    // From +14155550103 (the helper's caller): ended at once, then blocked.
    let caller = call_to(&hark, 960, "+14155550100", "?policy=consent-first").await;
    caller.say(speech("yes")).await.unwrap();
    assert!(caller.wait_closed(Duration::from_secs(20)).await.is_some());
    let list = api
        .wait("/api/v1/blocklist", |l| {
            l.as_array().is_some_and(|l| !l.is_empty())
        })
        .await;
    let entry = &list[0];
    assert_eq!(entry["number"], "+14155550103", "{list}");
    assert_eq!(entry["reason"], "profanity");
    assert_eq!(entry["created_by"], "rule:profanity");
    let days = (entry["expires_at"].as_i64().unwrap() - entry["created_at"].as_i64().unwrap())
        / 86_400_000;
    assert_eq!(days, 30, "{entry}");
    // The next call from the number is rejected.
    let xml = voice_from(&hark, &sid(961), "+14155550103").await;
    assert!(xml.contains("<Reject"), "{xml}");
    // Once the block has expired, the number may call again.
    let db = sqlx::SqlitePool::connect(&node.db).await.unwrap();
    sqlx::query("UPDATE blocklist SET expires_at = 1")
        .execute(&db)
        .await
        .unwrap();
    let xml = voice_from(&hark, &sid(963), "+14155550103").await;
    assert!(xml.contains("<Stream"), "{xml}");
    let (_, audit) = api.get("/api/v1/audit").await;
    assert!(
        audit.to_string().contains("rule:profanity") && !audit.to_string().contains("5550103"),
        "{audit}"
    );
    // A withheld number is nobody in particular: never blocked.
    let xml = voice_from(&hark, &sid(962), "anonymous").await;
    assert!(!xml.contains("<Reject"), "{xml}");
    let token = token_in(&xml);
    let withheld = signed_stream(&hark, 962, &[("hark_token", &token)]).await;
    assert!(withheld.wait_idle(QUIET, GREETING).await);
    withheld.say(speech("yes")).await.unwrap();
    assert!(
        withheld
            .wait_closed(Duration::from_secs(20))
            .await
            .is_some(),
        "{}",
        hark.logs()
    );
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(962)), |c| {
            !c["ended_at"].is_null()
        })
        .await;
    assert_eq!(call["end_reason"], "profanity", "{call}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, list) = api.get("/api/v1/blocklist").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert!(hark.logs().contains("withheld or invalid; not blocked"));
}
