//! Personal data protected end to end: DTMF digits and outcome values
//! encrypted (or not kept), masked for `viewer`, erased by retention; audit
//! rows without numbers or typed reasons; the same PII keys on every node;
//! no internal details to anyone without a token.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::fakes::Fakes;
use crate::fakes::openai::Reply;
use crate::records::{Api, Node, fresh_pg};
use crate::support::{GREETING, Hark, QUIET, repo_path, speech, temp_dir};

/// Opens the node's SQLite file directly: what is at rest.
async fn sqlite(node: &Node) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&node.db).await.unwrap()
}

fn env_of(node: &Node) -> Vec<(String, String)> {
    node.env()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_values_are_encrypted_masked_for_viewers_and_found_by_slot() {
    let fakes = Fakes::start().await;
    fakes.openai.reply(Reply::Tool {
        text: String::new(),
        name: "record_outcome".into(),
        arguments: r#"{"interested": true, "plan": "pro"}"#.into(),
    });
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let viewer = node.token("viewer", "wall");
    let env = env_of(&node);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hark = Hark::start_live(&fakes, &env);
    let caller = hark.caller(900).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let said = caller.say(speech("yes")).await.unwrap();
    caller
        .wait_media_since(said.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let sid = format!("CA{:032x}", 900);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["outcome"].is_object()
        })
        .await;
    assert_eq!(call["outcome"]["plan"], "pro", "{call}");
    assert_eq!(call["outcome"]["interested"], true, "{call}");
    let as_viewer = Api {
        hark: &hark,
        token: viewer,
    };
    let (_, masked) = as_viewer.get(&format!("/api/v1/calls/{sid}")).await;
    assert_eq!(masked["outcome"]["plan"], "***", "{masked}");
    assert_eq!(masked["outcome"]["interested"], "***", "{masked}");
    for (filter, total) in [
        ("plan:pro", 1),
        ("plan:basic", 0),
        ("interested:true", 1),
        ("interested:false", 0),
    ] {
        let (code, page) = api.get(&format!("/api/v1/calls?outcome={filter}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["total"], total, "{filter}: {page}");
    }
    let (code, _) = api.get("/api/v1/calls?outcome=noslot").await;
    assert_eq!(code, 400);
    // At rest: no value in clear, anywhere.
    let db = sqlite(&node).await;
    let (clear, enc): (Option<String>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT outcome, outcome_enc FROM calls WHERE call_sid = ?")
            .bind(&sid)
            .fetch_one(&db)
            .await
            .unwrap();
    let clear = clear.unwrap();
    assert!(!clear.contains("pro") && !clear.contains("true"), "{clear}");
    assert!(clear.contains("\"plan\":\"h:"), "{clear}");
    assert!(enc.is_some());
}

/// `tests/policies/e2e.toml` plus `extra`, in a temporary file.
fn e2e_policy_with(extra: &str) -> String {
    let text = std::fs::read_to_string(repo_path("tests/policies/e2e.toml")).unwrap();
    let path = temp_dir("hark-privacy-policy").join("e2e.toml");
    std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
    path.display().to_string()
}

async fn dtmf_call(node: &Node, policy: &str, n: u64) -> (Hark, String) {
    let hark = node.start_with_policy(policy, &[]);
    let caller = hark.caller(n).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    caller.dtmf('5');
    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    (hark, format!("CA{n:032x}"))
}

#[tokio::test]
async fn dtmf_digits_are_kept_only_when_the_policy_asks_and_then_encrypted() {
    // By default: only that a key was pressed.
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let (hark, sid) = dtmf_call(&node, &repo_path("tests/policies/e2e.toml"), 910).await;
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["kind"] == "dtmf"))
        })
        .await;
    let dtmf = |c: &Value| {
        c["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "dtmf")
            .map(|e| e["detail"].clone())
            .unwrap()
    };
    assert_eq!(dtmf(&call), "pressed", "{call}");
    drop(hark);

    // Asked for: kept encrypted, shown to admins, masked for viewers.
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let viewer = node.token("viewer", "wall");
    let policy = e2e_policy_with("[records]\ndtmf_digits = true");
    let (hark, sid) = dtmf_call(&node, &policy, 911).await;
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let path = format!("/api/v1/calls/{sid}");
    let call = api
        .wait(&path, |c| {
            c["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["kind"] == "dtmf"))
        })
        .await;
    assert_eq!(dtmf(&call), "5");
    let (_, seen) = Api {
        hark: &hark,
        token: viewer,
    }
    .get(&path)
    .await;
    assert_eq!(dtmf(&seen), "***");
    let db = sqlite(&node).await;
    let (detail, enc): (String, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT detail, detail_enc FROM call_events WHERE call_sid = ? AND kind = 'dtmf'",
    )
    .bind(&sid)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(detail, "");
    assert!(enc.is_some());
}

#[tokio::test]
async fn audit_rows_hold_no_number_and_no_typed_reason() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start(&[]);
    let reason = "shouted at our agent Priya";
    let res = hark
        .http()
        .post(hark.url("/api/v1/blocklist"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"number": "+14155550104", "reason": reason}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = hark
        .http()
        .delete(hark.url("/api/v1/blocklist/+14155550104"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let (_, log) = api.get("/api/v1/audit").await;
    let text = log.to_string();
    for secret in [reason, "+14155550104", "0104", "Priya"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let blocks: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "block_number" || e["action"] == "unblock_number")
        .collect();
    assert_eq!(blocks.len(), 2, "{log}");
    // The same number, the same keyed reference: traceable, not readable.
    assert!(blocks[0]["target"].as_str().unwrap().starts_with("h:"));
    assert_eq!(blocks[0]["target"], blocks[1]["target"]);
}

#[tokio::test]
async fn postgres_nodes_need_the_same_pii_keys() {
    let node = Node::postgres().await;
    let serve = |keys: Option<(&str, &str)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hark"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .envs(node.env())
            .env_remove("HARK_PII_KEYS")
            .env_remove("HARK_PII_HASH_KEY");
        if let Some((keys, hash)) = keys {
            cmd.env("HARK_PII_KEYS", keys)
                .env("HARK_PII_HASH_KEY", hash);
        }
        cmd
    };
    let out = serve(None).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HARK_PII_KEYS and HARK_PII_HASH_KEY are required with PostgreSQL"),
        "{err}"
    );
    // The first node writes its keys' fingerprints...
    let first = node.start(&[]);
    drop(first);
    // ...and a node with another key (same id) is refused, by name.
    let other = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let out = serve(Some((other, crate::records::PII_HASH_KEY)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("PII key \"k1\" is not the one this database's rows were written with"),
        "{err}"
    );
    let out = serve(Some((
        crate::records::PII_KEYS,
        other.trim_start_matches("k1:"),
    )))
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HARK_PII_HASH_KEY is not the one"), "{err}");
    // A key id given twice is refused before anything else.
    let twice = format!("{},{}", crate::records::PII_KEYS, other);
    let out = serve(Some((&twice, crate::records::PII_HASH_KEY)))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
    let _ = fresh_pg;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_no_internal_detail_and_the_node_api_does_for_staff() {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let viewer = node.token("viewer", "wall");
    let mut env = env_of(&node);
    // Deepgram at an internal address nobody listens on.
    env.push((
        "HARK_PROVIDERS__DEEPGRAM__BASE_URL".into(),
        "http://127.0.0.1:9".into(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hark = Hark::start_live(&fakes, &env);
    let readyz = || async {
        hark.http()
            .get(hark.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let mut body = readyz().await;
    for _ in 0..100 {
        if body["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["state"] == "unhealthy")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        body = readyz().await;
    }
    let dg = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "deepgram")
        .unwrap()
        .clone();
    assert_eq!(dg["state"], "unhealthy", "{body}");
    assert_eq!(dg["kind"], "connect", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http"),
        "{text}"
    );
    let node_api = |token: String| {
        let hark = &hark;
        async move { Api { hark, token }.get("/api/v1/node").await.1 }
    };
    let staff = node_api(admin).await;
    assert!(staff.to_string().contains("127.0.0.1:9"), "{staff}");
    let wall = node_api(viewer).await;
    assert!(!wall.to_string().contains("127.0.0.1"), "{wall}");
}

#[tokio::test]
async fn the_policies_api_shows_viewers_no_path_and_no_file_contents() {
    let node = Node::sqlite();
    let viewer = node.token("viewer", "wall");
    let ai_ops = node.token("ai_ops", "tuner");
    let dir = temp_dir("hark-policies");
    std::fs::copy(repo_path("tests/policies/e2e.toml"), dir.join("e2e.toml")).unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "greeting = \"secret plan: call the CEO\n",
    )
    .unwrap();
    let hark = node.start_with_policies(dir.to_str().unwrap(), &[]);
    let list = |token: String| {
        let hark = &hark;
        async move { Api { hark, token }.get("/api/v1/policies").await.1 }
    };
    let seen = list(viewer).await;
    let text = seen.to_string();
    assert!(!text.contains(dir.to_str().unwrap()), "{text}");
    assert!(!text.contains("secret plan"), "{text}");
    let broken = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"] == "broken.toml")
        .unwrap();
    assert_eq!(broken["valid"], false);
    let staff = list(ai_ops).await;
    let broken = staff
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"] == "broken.toml")
        .unwrap();
    assert!(!broken["errors"].as_array().unwrap().is_empty(), "{staff}");
}
