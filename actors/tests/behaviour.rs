//! Behaviour fixtures: every `tests/behaviour/*.toml` is a policy, a script
//! and the decisions it must lead to, run through the code path of
//! `hark policy simulate --sim` on a paused clock. Adding a case is adding
//! a file (see `tests/behaviour/README.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hark_actors::simulate::{Decision, Simulation, script};
use hark_actors::{PolicyFile, Providers};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    policy: String,
    script: String,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Expect {
    says: Vec<String>,
    disposition: Option<String>,
    slots: Map<String, Value>,
    masked: Vec<String>,
    ended: Option<String>,
    callback: Option<[String; 2]>,
    /// Events on record (`rule: profanity: warned`…), in this order.
    events: Vec<String>,
    /// Substrings the caller never hears (of an interrupted line, the part
    /// before the cut counts).
    never_says: Vec<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs one case; every unmet expectation, with the whole transcript.
async fn run(file: &Path) -> Result<(), String> {
    let case: Case = toml::from_str(&std::fs::read_to_string(file).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let policy =
        PolicyFile::load(&repo().join("policies").join(&case.policy)).map_err(|e| e.to_string())?;
    let steps = script::parse(&case.script).map_err(|e| e.to_string())?;
    let policy = Arc::new(policy);
    let providers = Providers::simulated(&policy);
    let (mut sim, mut log) = Simulation::start(policy, providers)
        .await
        .map_err(|e| e.to_string())?;
    for step in &steps {
        log.extend(sim.step(step).await);
    }
    log.extend(sim.hang_up().await);
    let transcript: Vec<String> = log.iter().map(ToString::to_string).collect();
    let mut problems = Vec::new();
    // Bot lines, in order.
    let bot: Vec<&str> = log
        .iter()
        .filter_map(|d| match d {
            Decision::Bot { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    // What the caller heard: of an interrupted line, the part before the cut.
    let heard: Vec<&str> = log
        .iter()
        .filter_map(|d| match d {
            Decision::Bot {
                heard: Some(h),
                interrupted: true,
                ..
            } => Some(h.as_str()),
            Decision::Bot { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    for never in &case.expect.never_says {
        if let Some(line) = heard.iter().find(|l| l.contains(never.as_str())) {
            problems.push(format!("the bot says {never:?}: {line:?}"));
        }
    }
    let mut at = 0;
    for want in &case.expect.says {
        match bot
            .get(at..)
            .and_then(|rest| rest.iter().position(|l| l.contains(want.as_str())))
        {
            Some(i) => at += i,
            None => problems.push(format!("the bot never says {want:?} (in order)")),
        }
    }
    let events: Vec<String> = log
        .iter()
        .filter_map(|d| match d {
            Decision::Event { event, detail } => Some(format!("{event}: {detail}")),
            _ => None,
        })
        .collect();
    let mut at = 0;
    for want in &case.expect.events {
        match events
            .get(at..)
            .and_then(|rest| rest.iter().position(|e| e == want))
        {
            Some(i) => at += i + 1,
            None => problems.push(format!("no event {want:?} (in order)")),
        }
    }
    let outcome = log.iter().find_map(|d| match d {
        Decision::Outcome {
            disposition,
            slots,
            callback,
        } => Some((disposition, slots, callback)),
        _ => None,
    });
    match (&case.expect.disposition, outcome) {
        (Some(want), Some((got, ..))) if want != got => {
            problems.push(format!("disposition {got:?}, expected {want:?}"));
        }
        (Some(want), None) => problems.push(format!("no outcome, expected {want:?}")),
        _ => {}
    }
    let empty = Map::new();
    let slots = outcome.map_or(&empty, |(_, s, _)| s);
    for (name, want) in &case.expect.slots {
        if slots.get(name) != Some(want) {
            problems.push(format!(
                "slot {name} = {:?}, expected {want}",
                slots.get(name)
            ));
        }
    }
    for name in &case.expect.masked {
        if slots.get(name) != Some(&Value::from("***")) {
            problems.push(format!("slot {name} is not masked: {:?}", slots.get(name)));
        }
    }
    if let Some([start, end]) = &case.expect.callback {
        let got = outcome.and_then(|(_, _, c)| c.as_ref());
        if got.is_none_or(|w| w.start != *start || w.end != *end) {
            problems.push(format!(
                "callback window {got:?}, expected {start} .. {end}"
            ));
        }
    }
    if let Some(want) = &case.expect.ended {
        let got = log.iter().rev().find_map(|d| match d {
            Decision::Ended { reason } => Some(reason.as_str()),
            _ => None,
        });
        if got != Some(want.as_str()) {
            problems.push(format!("ended {got:?}, expected {want:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}:\n  {}\ntranscript:\n  {}",
            file.display(),
            problems.join("\n  "),
            transcript.join("\n  ")
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn every_behaviour_fixture_leads_to_its_decisions() {
    let dir = repo().join("tests/behaviour");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run(file).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The harness can fail: a case that expects what does not happen is caught.
#[tokio::test(start_paused = true)]
async fn a_wrong_expectation_fails_with_the_transcript() {
    let dir = std::env::temp_dir().join(format!("hark-behaviour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wrong.toml");
    std::fs::write(
        &file,
        "policy = \"support-faq.toml\"\nscript = \"When are you open?\"\n[expect]\ndisposition = \"escalated\"\nsays = [\"we are closed\"]\n",
    )
    .unwrap();
    let err = run(&file).await.unwrap_err();
    assert!(
        err.contains("disposition \"resolved\", expected \"escalated\""),
        "{err}"
    );
    assert!(err.contains("never says \"we are closed\""), "{err}");
    assert!(err.contains("bot: We're open nine to six"), "{err}");
}
