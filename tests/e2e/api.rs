//! The admin API under pressure: tokens that expire and are revoked, failed
//! authentication limited per client, a flood of bad tokens that cannot
//! starve the webhooks, a deadline on every request, health checks that
//! follow a policy reload.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::records::{Api, Node, Proxy};
use crate::support::{Hark, repo_path, temp_dir};

fn token_with(node: &Node, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["token", "create"])
        .args(args)
        .envs(node.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn status(hark: &Hark, token: &str) -> u16 {
    hark.http()
        .get(hark.url("/api/v1/node"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn tokens_expire_and_are_revoked_and_every_change_is_audited() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let brief = token_with(
        &node,
        &["--role", "viewer", "--name", "brief", "--expires-in", "2s"],
    );
    let wall = node.token("viewer", "wall");
    let by_cli = node.token("viewer", "by-cli");
    let hark = node.start(&[]);
    assert_eq!(status(&hark, &brief).await, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let res = hark
        .http()
        .get(hark.url("/api/v1/node"))
        .bearer_auth(&brief)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("expired"));

    // Revoked through the API: refused at once on this node.
    assert_eq!(status(&hark, &wall).await, 200);
    let res = hark
        .http()
        .delete(hark.url("/api/v1/tokens/wall"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(status(&hark, &wall).await, 401);

    // Revoked from the command line: refused within the cache's 10 s.
    assert_eq!(status(&hark, &by_cli).await, 200);
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["token", "revoke", "--name", "by-cli"])
        .envs(node.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = tokio::time::Instant::now();
    while status(&hark, &by_cli).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(12),
            "still accepted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let api = Api {
        hark: &hark,
        token: admin,
    };
    let (code, tokens) = api.get("/api/v1/tokens").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["brief", "ops"], "{tokens}");
    assert!(tokens[0]["expires_at"].is_i64());
    assert!(!tokens.to_string().contains("hash"), "{tokens}");
    let (_, log) = api.get("/api/v1/audit").await;
    let actions: Vec<(&str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    for want in [
        ("create_token", "ops"),
        ("create_token", "brief"),
        ("create_token", "wall"),
        ("revoke_token", "wall"),
        ("revoke_token", "by-cli"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
}

/// A client whose addresses are `127.0.0.N`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, last]))
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let hark = node.start(&[("HARK_API_AUTH_FAILURES_PER_MINUTE", "5")]);
    let guesser = client_from(5);
    let get = |client: &reqwest::Client, token: String| {
        client
            .get(hark.url("/api/v1/node"))
            .bearer_auth(token)
            .send()
    };
    for i in 0..5 {
        let code = get(&guesser, format!("hark_guess{i}"))
            .await
            .unwrap()
            .status();
        assert_eq!(code, 401);
    }
    let code = get(&guesser, "hark_guess5".into()).await.unwrap().status();
    assert_eq!(code, 429, "the sixth guess");
    // Even a good token waits, from that address; other addresses do not.
    assert_eq!(get(&guesser, admin.clone()).await.unwrap().status(), 429);
    assert_eq!(get(&client_from(6), admin).await.unwrap().status(), 200);
}

/// The admin API's connections are all stuck (its token queries wait on a
/// lock, as under a flood of bad tokens on a busy database) while a blocked
/// number calls: the webhook's lookup has its own pool, so the block holds
/// instead of failing open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_api_queries_do_not_let_a_blocked_caller_through() {
    use sqlx::Connection;
    let node = Node::postgres().await;
    let admin = node.token("admin", "ops");
    let hark = node.start(&[]);
    let res = hark
        .http()
        .post(hark.url("/api/v1/blocklist"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"number": "+14155550108", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Every token lookup now waits on this lock.
    let mut locker = sqlx::postgres::PgConnection::connect(&node.db)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let req = hark
                .http()
                .get(hark.url("/api/v1/calls"))
                .bearer_auth(format!("hark_flood_{i}"))
                .send();
            tokio::spawn(req)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let xml = hark
            .http()
            .post(hark.url("/twilio/voice"))
            .form(&[
                ("CallSid", format!("CA{:032x}", 1000 + i)),
                ("From", "+14155550108".into()),
                ("To", "+14155550106".into()),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            xml.contains("<Reject"),
            "a blocked caller got through: {xml}"
        );
    }
    sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
    for req in flood {
        let code = req.await.unwrap().unwrap().status().as_u16();
        assert!([401, 503].contains(&code), "{code}");
    }
}

/// A database that stops answering: the admin API says so (503) within its
/// deadline instead of holding the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_request_to_a_hung_database_answers_503_within_its_deadline() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let admin = node.token("admin", "ops");
    node.db = proxy.url(&node.db);
    let hark = node.start(&[]);
    assert_eq!(status(&hark, &admin).await, 200);
    proxy.stall();
    let asked = tokio::time::Instant::now();
    let res = hark
        .http()
        .get(hark.url("/api/v1/calls"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "{}", res.text().await.unwrap());
    assert!(
        asked.elapsed() < Duration::from_secs(13),
        "{:?}",
        asked.elapsed()
    );
    proxy.restore();
}

#[tokio::test]
async fn health_checks_follow_a_policy_reload() {
    let node = Node::sqlite();
    let ai_ops = node.token("ai_ops", "tuner");
    let dir = temp_dir("hark-reload-health");
    let file = dir.join("e2e.toml");
    let sim = std::fs::read_to_string(repo_path("tests/policies/e2e.toml")).unwrap();
    std::fs::write(&file, &sim).unwrap();
    // Never a real provider: OpenAI's base URL is a local port nobody answers.
    let hark = node.start_with_policy(
        file.to_str().unwrap(),
        &[
            ("OPENAI_API_KEY", "sk-x"),
            ("HARK_PROVIDERS__OPENAI__BASE_URL", "http://127.0.0.1:9/v1"),
        ],
    );
    let providers = || async {
        let body: Value = hark
            .http()
            .get(hark.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["role"].as_str().unwrap(),
                    p["provider"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(providers().await.contains(&"llm:sim".to_owned()));
    // The new version talks to OpenAI (at an address nobody answers).
    std::fs::write(
        &file,
        sim.replace("llm = [\"sim\"]", "llm = [\"openai\"]")
            + "\n[llm.openai]\nmodel = \"gpt-4o-mini\"\n",
    )
    .unwrap();
    let res = hark
        .http()
        .post(hark.url("/api/v1/policies/e2e/reload"))
        .bearer_auth(&ai_ops)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let listed = providers().await;
    assert!(listed.contains(&"llm:openai".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"llm:sim".to_owned()), "{listed:?}");
}
