//! Rules on live calls through `hark serve` with real speech: consent to
//! record asked before the greeting and answered in words or keys (the
//! decision on record, in the API and counted; a decline covering the
//! transcript keeps the text out; the call goes on either way); a silent
//! caller re-prompted, then the call ended; each escalation trigger raising
//! a transfer request on record; a forbidden claim kept from the voice; a
//! keypad menu; a language switch by key or by words; a backchannel over
//! the bot (confirm mode) and a false interruption resumed (immediate
//! mode). (Profanity:
//! `policies.rs`.)

use std::time::Duration;

use serde_json::Value;

use crate::policies::{call_to, example, serve_signed, sid, with_script};
use crate::records::{Api, Node};
use crate::support::{QUIET, speech, temp_dir};

/// The caller says something and waits for the bot's answer to finish.
async fn answer(caller: &hark_loadtest::Caller, hark: &crate::support::Hark) {
    let said = caller.say(speech("yes")).await.unwrap();
    caller
        .wait_media_since(said.ended, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no answer:\n{}", hark.logs()));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(30)).await);
}

fn consent_of(body: &Value) -> (bool, Vec<(String, String)>) {
    let decisions = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["answer"].as_str().unwrap().to_owned(),
                d["how"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (body["allows_recording"].as_bool().unwrap(), decisions)
}

#[tokio::test]
async fn consent_is_asked_first_answered_by_speech_or_key_and_the_call_goes_on() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let viewer = node.token("viewer", "watcher");
    let dir = temp_dir("hark-consent");
    // The same agent twice: one whose callers agree, one whose callers
    // decline, with the decline covering the transcript too.
    example(&dir, "consent-first.toml", "consent-first.toml", |t| {
        with_script(t, "[\"Yes, that's fine\", \"My claim reference is C-778\"]")
    });
    example(&dir, "consent-first.toml", "consent-no.toml", |t| {
        with_script(t, "[\"No thanks\", \"My claim reference is C-778\"]")
            .replace("name = \"consent-first\"", "name = \"consent-no\"")
            .replace(
                "covers = [\"recording\"]",
                "covers = [\"recording\", \"transcript\"]",
            )
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };

    // Yes, by speech: then the greeting, then the conversation.
    let yes = call_to(&hark, 970, "+14155550100", "?policy=consent-first").await;
    answer(&yes, &hark).await;
    answer(&yes, &hark).await;
    yes.hangup();
    // No, by speech.
    let no = call_to(&hark, 971, "+14155550100", "?policy=consent-no").await;
    answer(&no, &hark).await;
    answer(&no, &hark).await;
    no.hangup();
    // No, by key 2, after a key that means neither (asked again).
    let keys = call_to(&hark, 972, "+14155550100", "?policy=consent-first").await;
    for digit in ['7', '2'] {
        let before = tokio::time::Instant::now();
        keys.dtmf(digit);
        keys.wait_media_since(before, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no answer to {digit}:\n{}", hark.logs()));
        assert!(keys.wait_idle(QUIET, Duration::from_secs(30)).await);
    }
    answer(&keys, &hark).await;
    keys.hangup();

    for (n, allowed, want) in [
        (970, true, vec![("accepted", "speech")]),
        (971, false, vec![("declined", "speech")]),
        (972, false, vec![("declined", "dtmf")]),
    ] {
        let path = format!("/api/v1/calls/{}/consent", sid(n));
        let body = api
            .wait(&path, |b| {
                b["decisions"].as_array().is_some_and(|d| !d.is_empty())
            })
            .await;
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(a, h)| (a.to_owned(), h.to_owned()))
            .collect();
        assert_eq!(consent_of(&body), (allowed, want), "{body}");
        let d = &body["decisions"][0];
        assert!(d["asked_at"].as_i64().unwrap() <= d["at"].as_i64().unwrap());
        // The call went on past the answer: the bot replied to the next turn.
        let call = api
            .wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
                !c["ended_at"].is_null()
            })
            .await;
        assert_eq!(call["end_reason"], "stop", "{call}");
    }
    // A viewer may see consent decisions (they hold no personal data).
    let (code, _) = Api {
        hark: &hark,
        token: viewer,
    }
    .get(&format!("/api/v1/calls/{}/consent", sid(970)))
    .await;
    assert_eq!(code, 200);
    let (code, _) = api.get("/api/v1/calls/CAnope/consent").await;
    assert_eq!(code, 404);

    // The agreed call's transcript is whole; the declined one (covering the
    // transcript) keeps its turns' shape but none of their words after the no.
    let (_, agreed) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(970)))
        .await;
    assert!(agreed.to_string().contains("C-778"), "{agreed}");
    let (_, declined) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(971)))
        .await;
    let turns = declined["turns"].as_array().unwrap();
    assert!(turns.len() >= 3, "{declined}");
    assert!(
        turns[0]["text"]
            .as_str()
            .unwrap()
            .contains("Do you agree to the recording"),
        "{declined}"
    );
    assert!(
        turns[1..].iter().all(|t| t["text"] == ""),
        "text kept after the no: {declined}"
    );

    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_consent_total", &[("result", "accepted")]), 1.0);
    assert_eq!(m.sum("hark_consent_total", &[("result", "declined")]), 2.0);
    assert_eq!(
        m.sum(
            "hark_rule_decisions_total",
            &[("rule", "consent"), ("action", "asked_again")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_silent_caller_is_reprompted_then_the_call_ends_politely() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-idle");
    example(&dir, "consent-first.toml", "consent-first.toml", |t| {
        t.replace("mode = \"required\"", "mode = \"off\"")
            .replace("recording = \"with_consent\"", "recording = \"never\"")
            .replace("after_secs = 8", "after_secs = 3")
            .replace("reprompts = 2", "reprompts = 1")
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let caller = call_to(&hark, 980, "+14155550100", "?policy=consent-first").await;
    // Greeting played; 3 s of silence, the re-prompt, 3 s more, the goodbye.
    let closed = caller.wait_closed(Duration::from_secs(30)).await;
    assert!(closed.is_some(), "the call did not end:\n{}", hark.logs());
    let call = api
        .wait(&format!("/api/v1/calls/{}", sid(980)), |c| {
            !c["ended_at"].is_null()
        })
        .await;
    assert_eq!(call["end_reason"], "idle", "{call}");
    let rules: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rule")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["idle: reprompted", "idle: ended"], "{call}");
    let (_, transcript) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(980)))
        .await;
    let text = transcript.to_string();
    assert!(
        text.contains("Are you still there") && text.contains("end the call now"),
        "{text}"
    );
}

#[tokio::test]
async fn each_escalation_trigger_raises_a_transfer_request_on_record() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-escalation");
    // One agent, a copy per simulated caller: each says what triggers one.
    for (name, script) in [
        ("support-faq", "[\"I want to speak to a person\"]"),
        ("support-upset", "[\"This is terrible, I'm fed up\"]"),
        ("support-mumble", "[\"\", \"\"]"),
        ("support-complain", "[\"I want to complain\"]"),
    ] {
        example(&dir, "support-faq.toml", &format!("{name}.toml"), |t| {
            with_script(t, script).replace("name = \"support-faq\"", &format!("name = \"{name}\""))
        });
    }
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    for (n, policy, turns) in [
        (990, "support-faq", 1),
        (991, "support-upset", 1),
        (992, "support-mumble", 2),
        (993, "support-complain", 1),
    ] {
        let caller = call_to(&hark, n, "+14155550100", &format!("?policy={policy}")).await;
        for _ in 0..turns {
            answer(&caller, &hark).await;
        }
        caller.hangup();
    }
    let keys = call_to(&hark, 994, "+14155550100", "?policy=support-faq").await;
    let before = tokio::time::Instant::now();
    keys.dtmf('0');
    keys.wait_media_since(before, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no answer to 0:\n{}", hark.logs()));
    assert!(keys.wait_idle(QUIET, Duration::from_secs(30)).await);
    keys.hangup();

    for (n, reason) in [
        (990, "keyword"),
        (991, "sentiment"),
        (992, "not_understood"),
        (993, "tool"),
        (994, "dtmf"),
    ] {
        let call = api
            .wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
                !c["ended_at"].is_null() && !c["disposition"].is_null()
            })
            .await;
        let requests: Vec<&str> = call["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "transfer_requested")
            .map(|e| e["detail"].as_str().unwrap())
            .collect();
        assert_eq!(
            requests,
            [format!("{reason} to support_desk")],
            "{reason}: {call}"
        );
        assert_eq!(call["disposition"], "escalated", "{call}");
        let (_, transcript) = api
            .get(&format!("/api/v1/calls/{}/transcript", sid(n)))
            .await;
        assert!(
            transcript
                .to_string()
                .contains("asked our support desk to call you back"),
            "{reason}: {transcript}"
        );
    }
    let m = hark.metrics().await;
    for reason in ["keyword", "sentiment", "not_understood", "tool", "dtmf"] {
        assert_eq!(
            m.sum("hark_transfer_requests_total", &[("reason", reason)]),
            1.0,
            "{reason}"
        );
    }
}

/// `[rules.claims]` for the live-provider policy.
const CLAIMS: &str = "[rules.claims]\nphrases = [\"guaranteed returns\", \"risk-free\"]\nsafe_line = \"I can't promise returns.\"\n\n[tools]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_claim_never_reaches_the_voice_and_nothing_is_said_twice() {
    use crate::fakes::Fakes;
    use crate::fakes::openai::Reply;
    let fakes = Fakes::start().await;
    let policy = crate::providers::live_policy("claims", &[("[tools]", CLAIMS)]);
    let hark = crate::support::Hark::start_live_with(&fakes, &policy, &[]);
    // Turn 1: the second sentence promises returns; the continuation asked
    // for again is clean. Turn 2: both try; the safe line is said.
    for reply in [
        "Our fund is popular. It gives guaranteed returns of twelve percent. Shall I send details?",
        "Returns depend on the market. Shall I send details?",
        "Sure thing. It is risk-free.",
        "Absolutely, risk-free and guaranteed returns.",
    ] {
        fakes.openai.reply(Reply::Text(reply.into()));
    }
    let caller = hark.caller(995).await;
    assert!(caller.wait_idle(QUIET, crate::support::GREETING).await);
    crate::providers::turn(&hark, &caller, "order").await;
    crate::providers::turn(&hark, &caller, "yes").await;
    let said = fakes.elevenlabs.sentences();
    assert_eq!(
        &said[2..],
        [
            "Our fund is popular.",
            "Returns depend on the market.",
            "Shall I send details?",
            "Sure thing.",
            "I can't promise returns."
        ],
        "{said:?}"
    );
    // The continuation was asked for with an instruction naming the claim,
    // after the sentence already spoken.
    let requests = fakes.openai.chat_requests();
    let second = requests[1]["messages"].as_array().unwrap();
    let last = second.last().unwrap();
    assert_eq!(last["role"], "system", "{last}");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("\"guaranteed returns\""),
        "{last}"
    );
    assert_eq!(second[second.len() - 2]["content"], "Our fund is popular.");
    let m = hark.metrics().await;
    for action in ["regenerated", "safe_line"] {
        let got = m.sum(
            "hark_rule_decisions_total",
            &[("rule", "claims"), ("action", action)],
        );
        assert_eq!(got, if action == "regenerated" { 2.0 } else { 1.0 });
    }
}

/// The caller presses `digit` and waits for the bot's answer to finish.
async fn press(caller: &hark_loadtest::Caller, digit: char, hark: &crate::support::Hark) {
    let before = tokio::time::Instant::now();
    caller.dtmf(digit);
    caller
        .wait_media_since(before, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no answer to {digit}:\n{}", hark.logs()));
    assert!(caller.wait_idle(QUIET, Duration::from_secs(30)).await);
}

/// A call's events of `kind`, as details.
fn events_of(call: &Value, kind: &str) -> Vec<String> {
    call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_keypad_menu_and_a_language_switch_by_key_or_by_words() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-menu");
    example(&dir, "support-faq.toml", "support-faq.toml", |t| {
        with_script(t, "[\"How long does a refund take?\"]")
    });
    example(&dir, "india-sales-ivr.toml", "india-sales-ivr.toml", |t| {
        with_script(
            t,
            "[\"हाँ\", \"Can you tell me about the broadband plans please\", \"\"]",
        )
    });
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    // The support menu: key 2 is refunds; then a question about them.
    let menu = call_to(&hark, 1000, "+14155550100", "?policy=support-faq").await;
    press(&menu, '2', &hark).await;
    answer(&menu, &hark).await;
    menu.hangup();
    // Hindi IVR: consent, then nine English words, then words nobody heard.
    let words = call_to(&hark, 1001, "+919812345678", "?policy=india-sales-ivr").await;
    for _ in 0..3 {
        answer(&words, &hark).await;
    }
    words.hangup();
    // Hindi IVR: consent, then key 9 for English.
    let key = call_to(&hark, 1002, "+919812345678", "?policy=india-sales-ivr").await;
    answer(&key, &hark).await;
    press(&key, '9', &hark).await;
    key.hangup();

    let ended = |n: u64| {
        let api = &api;
        async move {
            api.wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
                !c["ended_at"].is_null()
            })
            .await
        }
    };
    let call = ended(1000).await;
    assert_eq!(call["outcome"]["topic"], "refunds", "{call}");
    assert_eq!(call["disposition"], "resolved", "{call}");
    assert!(
        events_of(&call, "rule").contains(&"menu: chosen".to_owned()),
        "{call}"
    );
    let transcript = |n: u64| {
        let api = &api;
        async move {
            api.get(&format!("/api/v1/calls/{}/transcript", sid(n)))
                .await
                .1
                .to_string()
        }
    };
    assert!(transcript(1000).await.contains("Sure, refunds"));

    let call = ended(1001).await;
    assert_eq!(events_of(&call, "language"), ["en-IN by words"], "{call}");
    let text = transcript(1001).await;
    assert!(
        text.contains("Sorry, I didn't catch that") && !text.contains("समझ नहीं पाई"),
        "the fallback after the switch is English: {text}"
    );
    let call = ended(1002).await;
    assert_eq!(events_of(&call, "language"), ["en-IN by menu"], "{call}");
    assert!(transcript(1002).await.contains("Hello! This is Priya"));
    let m = hark.metrics().await;
    for how in ["words", "menu"] {
        assert_eq!(
            m.sum(
                "hark_rule_decisions_total",
                &[("rule", "language"), ("action", how)]
            ),
            1.0,
            "{how}"
        );
    }
}

#[tokio::test]
async fn a_backchannel_does_not_stop_the_bot_and_a_false_interruption_resumes() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let dir = temp_dir("hark-barge-in");
    // Confirm mode: "haan" over the pitch.
    example(
        &dir,
        "lead-qualification.toml",
        "lead-qualification.toml",
        |t| with_script(t, "[\"Tell me more about the fund\", \"haan\"]"),
    );
    // Immediate mode with resume: "ok" over the delivery answer.
    example(&dir, "support-faq.toml", "support-faq.toml", |t| {
        with_script(t, "[\"How long does delivery take?\", \"ok\"]")
    });
    // Replies long enough to talk over (60 ms a character: ~11 s).
    for file in ["lead-qualification.toml", "support-faq.toml"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("ms_per_char = 10", "ms_per_char = 60")).unwrap();
    }
    let hark = serve_signed(&node, &dir, &[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    for (n, policy) in [(1010, "lead-qualification"), (1011, "support-faq")] {
        // Slow speech: the greeting (with the notice and the menu) is long.
        let query = format!("?policy={policy}");
        let token = crate::access::webhook_token_to(&hark, &sid(n), "+14155550100", &query).await;
        let caller = crate::access::signed_stream(&hark, n, &[("hark_token", &token)]).await;
        assert!(
            caller.wait_idle(QUIET, Duration::from_secs(40)).await,
            "no greeting"
        );
        let asked = caller.say(speech("yes")).await.unwrap();
        let reply = caller
            .wait_media_since(asked.ended, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no reply:\n{}", hark.logs()));
        // A second into the reply, the caller says something short over it.
        tokio::time::sleep_until(reply + Duration::from_secs(1)).await;
        let over = caller.say(speech("yes")).await.unwrap();
        // Either way the bot goes on talking once the caller has stopped.
        caller
            .wait_media_since(over.ended, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{policy}: the bot did not go on:\n{}", hark.logs()));
        assert!(caller.wait_idle(QUIET, Duration::from_secs(40)).await);
        let st = caller.state();
        let clears = st.clears.len();
        assert_eq!(st.stale_frames, 0, "{policy}");
        if policy == "lead-qualification" {
            assert_eq!(clears, 0, "confirm: a backchannel never clears");
        } else {
            assert_eq!(clears, 1, "immediate: speech clears at once");
        }
        assert!(
            st.audio_since(over.ended) > Duration::from_secs(3),
            "{policy}: {:?}",
            st.audio_since(over.ended)
        );
        drop(st);
        caller.hangup();
    }
    let events = |n: u64| {
        let api = &api;
        async move {
            let call = api
                .wait(&format!("/api/v1/calls/{}", sid(n)), |c| {
                    !c["ended_at"].is_null()
                })
                .await;
            call["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["kind"].as_str().unwrap(),
                        e["detail"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let confirm = events(1010).await;
    assert!(
        confirm.contains(&"backchannel: the bot carried on".to_owned())
            && !confirm.iter().any(|e| e.starts_with("barge_in")),
        "{confirm:?}"
    );
    let immediate = events(1011).await;
    assert!(
        immediate.iter().any(|e| e.starts_with("barge_in"))
            && immediate.contains(&"resumed: backchannel".to_owned()),
        "{immediate:?}"
    );
    // The resumed turn is on record after the interrupted one.
    let (_, transcript) = api
        .get(&format!("/api/v1/calls/{}/transcript", sid(1011)))
        .await;
    let bot: Vec<&Value> = transcript["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "bot")
        .collect();
    assert!(bot.len() >= 3, "{transcript}");
    assert_eq!(bot[1]["interrupted"], true, "{transcript}");
    assert!(
        bot[2]["text"]
            .as_str()
            .unwrap()
            .ends_with("confirmation email."),
        "{transcript}"
    );
}
