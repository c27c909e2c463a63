//! First run, as a new user: `hark serve` from any folder, a SQLite URL to a
//! file that does not exist yet, and start-up errors that say their cause once.

use std::process::Command;

use crate::support::{GREETING, Hark, QUIET, temp_dir};

#[tokio::test]
async fn serve_runs_from_any_folder_on_the_built_in_policy() {
    let elsewhere = temp_dir("hark-elsewhere");
    let hark = Hark::spawn("127.0.0.1:0", &[], &[], Some(&elsewhere));
    assert!(
        hark.banner()
            .contains("policy          default v1 (built in)"),
        "{}",
        hark.banner()
    );
    let caller = hark.caller(700).await;
    assert!(caller.wait_idle(QUIET, GREETING).await, "{}", hark.logs());
    // "Hello, thanks for calling. How can I help you today?", simulated.
    assert!(caller.state().media_bytes > 8000);
}

#[tokio::test]
async fn a_sqlite_url_to_a_file_that_does_not_exist_creates_it() {
    let dir = temp_dir("hark-newdb");
    let file = dir.join("not/yet/there/hark.db");
    let url = format!("sqlite://{}", file.display());
    let hark = Hark::start(&[("HARK_DATABASE_URL", &url)]);
    assert!(file.exists(), "{}", hark.logs());
    let caller = hark.caller(710).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
}

/// Runs `hark ARGS…`; its stderr.
fn stderr_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .env("HARK_DATA_DIR", temp_dir("hark-err"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_start_up_error_names_its_cause_once() {
    for args in [
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            "/nonexistent/support.toml",
        ][..],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/hark.toml",
        ][..],
        &["doctor", "--policy", "/nonexistent/support.toml"][..],
    ] {
        let err = stderr_of(args);
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn the_built_in_policy_is_listed_and_cannot_be_reloaded_from_a_file() {
    let node = crate::records::Node::sqlite();
    let admin = node.token("admin", "ops");
    let env = node.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hark = Hark::start_with(&[], &env);
    let api = crate::records::Api {
        hark: &hark,
        token: admin.clone(),
    };
    let (code, list) = api.get("/api/v1/policies").await;
    assert_eq!(code, 200);
    assert_eq!(list[0]["file"], "(built in)", "{list}");
    assert_eq!(list[0]["name"], "default");
    assert_eq!(list[0]["active"], true);
    let res = hark
        .http()
        .post(hark.url("/api/v1/policies/default/reload"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("--policy FILE"),
        "{body}"
    );
}
