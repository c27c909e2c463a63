//! Call records through `hark serve`: both backends, a database outage
//! mid-run, a restart with a full spool, Twilio signatures, the admin API's
//! roles and bad requests, the blocklist, policy reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{GREETING, Hark, QUIET, repo_path, speech, temp_dir};

/// PostgreSQL for the tests (trust auth); each test makes its own database.
fn pg_admin_url() -> String {
    std::env::var("HARK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn fresh_pg() -> String {
    use sqlx::Connection;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "hark_t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = pg_admin_url();
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set HARK_TEST_POSTGRES): {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Every test node shares one stream token key (PostgreSQL requires one).
pub const STREAM_TOKEN_KEY: &str = "e2e-stream-token-key-of-32-bytes-or-more";
/// And one set of PII keys (PostgreSQL requires them from the environment).
pub const PII_KEYS: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
pub const PII_HASH_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// A node's data directory and database, and tokens for it.
pub struct Node {
    pub data: std::path::PathBuf,
    pub db: String,
}

impl Node {
    pub fn sqlite() -> Self {
        let data = temp_dir("hark-rec");
        let db = format!("sqlite://{}/hark.db?mode=rwc", data.display());
        Self { data, db }
    }

    pub async fn postgres() -> Self {
        Self {
            data: temp_dir("hark-rec"),
            db: fresh_pg().await,
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HARK_DATA_DIR".into(), self.data.display().to_string()),
            ("HARK_DATABASE_URL".into(), self.db.clone()),
            ("HARK_STREAM_TOKEN_KEY".into(), STREAM_TOKEN_KEY.into()),
            ("HARK_PII_KEYS".into(), PII_KEYS.into()),
            ("HARK_PII_HASH_KEY".into(), PII_HASH_KEY.into()),
        ]
    }

    pub fn start(&self, extra: &[(&str, &str)]) -> Hark {
        self.start_with_policy(&repo_path("tests/policies/e2e.toml"), extra)
    }

    pub fn start_with_policy(&self, policy: &str, extra: &[(&str, &str)]) -> Hark {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Hark::start_with(&["--policy", policy], &env)
    }

    /// `hark serve --policies DIR`: every valid file in `dir` is live.
    pub fn start_with_policies(&self, dir: &str, extra: &[(&str, &str)]) -> Hark {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Hark::start_with(&["--policies", dir], &env)
    }

    /// `hark token create`; the token it prints.
    pub fn token(&self, role: &str, name: &str) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["token", "create", "--role", role, "--name", name])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

pub struct Api<'a> {
    pub hark: &'a Hark,
    pub token: String,
}

impl Api<'_> {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .hark
            .http()
            .get(self.hark.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let code = res.status().as_u16();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls until `f` accepts the body of `path`.
    pub async fn wait(&self, path: &str, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let (code, body) = self.get(path).await;
            if code == 200 && f(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{path} never matched; last: {:?}\n{}",
            self.get(path).await,
            self.hark.logs()
        );
    }
}

/// One call: greeting, a question, a barge-in over the reply, hang up.
pub async fn a_call(hark: &Hark, n: u64) -> String {
    let caller = hark.caller(n).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let asked = caller.say(speech("order")).await.unwrap();
    caller
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cut_in = caller.say(speech("interrupt")).await.unwrap();
    caller
        .wait_media_since(cut_in.ended, Duration::from_secs(8))
        .await
        .expect("a reply to the interruption");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    format!("CA{n:032x}")
}

async fn records_round_trip(node: Node) {
    let admin = node.token("admin", "ops");
    let hark = node.start(&[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let sid = a_call(&hark, 200).await;
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["end_reason"] == "stop"
        })
        .await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["carrier"], "twilio");
    assert_eq!(call["policy"], "e2e");
    assert!(call["duration_ms"].as_i64().unwrap() > 3000, "{call}");
    let kinds: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"barge_in"), "{kinds:?}");
    let (code, t) = api.get(&format!("/api/v1/calls/{sid}/transcript")).await;
    assert_eq!(code, 200);
    let turns = t["turns"].as_array().unwrap();
    let speakers: Vec<&str> = turns
        .iter()
        .map(|t| t["speaker"].as_str().unwrap())
        .collect();
    assert_eq!(speakers, ["bot", "caller", "bot", "caller", "bot"], "{t}");
    assert_eq!(turns[0]["text"], "Hello. How can I help you?");
    // The greeting is on record as ending when it finished playing, before the caller spoke.
    assert!(
        turns[0]["ended_at"].as_i64() <= turns[1]["started_at"].as_i64(),
        "{t}"
    );
    assert!(
        turns[1]["text"]
            .as_str()
            .unwrap()
            .contains("seconds to say"),
        "{t}"
    );
    let cut = &turns[2];
    assert_eq!(cut["interrupted"], true, "{t}");
    let (said, heard) = (
        cut["text"].as_str().unwrap(),
        cut["heard"].as_str().unwrap(),
    );
    assert!(
        said.starts_with(heard) && said.len() > heard.len(),
        "{said:?} / {heard:?}"
    );
    for (i, turn) in turns.iter().enumerate() {
        assert_eq!(turn["seq"], i as i64, "each turn once, in order");
    }
    let (_, audit) = api.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "read_transcript" && a["target"] == sid.as_str()),
        "{audit}"
    );
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_store_rows_spooled_total"), 0.0);
    assert!(m.get("hark_store_rows_written_total") >= turns.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_sqlite_are_encrypted_and_served_by_the_api() {
    let node = Node::sqlite();
    let data = node.data.clone();
    records_round_trip(node).await;
    // Transcript text never rests in clear.
    let db = std::fs::read(data.join("hark.db")).unwrap();
    let wal = std::fs::read(data.join("hark.db-wal")).unwrap_or_default();
    for needle in [&b"How can I help"[..], b"seconds to say"] {
        assert!(!db.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_postgres() {
    records_round_trip(Node::postgres().await).await;
}

/// A TCP proxy to PostgreSQL that a test can cut and restore.
pub struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Stalled: connections stay open and nothing gets through (a network
    /// that drops packets without resetting anything).
    stalled: Arc<tokio::sync::watch::Sender<bool>>,
    /// Stall as soon as the client sends these bytes (mid-transaction).
    stall_on: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// A byte pattern that stalls the proxy, and the stall switch.
type Trigger<'a> = (
    &'a std::sync::Mutex<Option<Vec<u8>>>,
    &'a tokio::sync::watch::Sender<bool>,
);

/// Copies `from` to `to` until EOF; stalls everything if `trigger` shows up.
async fn forward(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    trigger: Option<Trigger<'_>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some((pattern, stalled)) = trigger {
            let hit = pattern
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == p.as_slice()));
            if hit {
                stalled.send_replace(true);
                return std::future::pending().await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(tokio::sync::watch::channel(false).0);
        let stall_on: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (u, c, target) = (Arc::clone(&up), Arc::clone(&conns), target.to_owned());
        let (st, on) = (Arc::clone(&stalled), Arc::clone(&stall_on));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let target = target.clone();
                let (stalled, on) = (Arc::clone(&st), Arc::clone(&on));
                c.lock().unwrap().push(tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut stall = stalled.subscribe();
                    if !*stall.borrow() {
                        let (ri, wi) = inbound.split();
                        let (ro, wo) = out.split();
                        tokio::select! {
                            _ = forward(ri, wo, Some((&on, &stalled))) => return,
                            _ = forward(ro, wi, None) => return,
                            _ = stall.wait_for(|s| *s) => {}
                        }
                    }
                    // Stalled: hold both ends, pass nothing, until unstalled.
                    let _ = stall.wait_for(|s| !*s).await;
                }));
            }
        });
        Self {
            port,
            up,
            stalled,
            stall_on,
            conns,
        }
    }

    /// The network stalls the moment the client sends `pattern` — in the
    /// middle of a transaction, say.
    pub fn stall_on(&self, pattern: &str) {
        *self.stall_on.lock().unwrap() = Some(pattern.as_bytes().to_vec());
    }

    /// The database is gone: open connections are cut, new ones refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// The network to the database drops everything, silently.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn restore(&self) {
        *self.stall_on.lock().unwrap() = None;
        self.stalled.send_replace(false);
        self.up.store(true, Ordering::SeqCst);
    }

    /// The proxy's `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `db_url` through the proxy, in clear (so `stall_on` can see it).
    pub fn url(&self, db_url: &str) -> String {
        let url = db_url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port));
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sslmode=disable")
    }
}

/// Every call ended, and each call's turns are numbered 0..n without gaps:
/// nothing lost, nothing twice.
pub async fn assert_complete(api: &Api<'_>, sids: &[String]) {
    for sid in sids {
        api.wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["end_reason"] == "stop"
        })
        .await;
        let (_, t) = api.get(&format!("/api/v1/calls/{sid}/transcript")).await;
        let seqs: Vec<i64> = t["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs.len(), 5, "{sid}: {t}");
        assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>(), "{sid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_run_loses_nothing_and_duplicates_nothing() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let admin = node.token("admin", "ops");
    node.db = proxy.url(&node.db);
    let hark = node.start(&[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    // Four calls; the database goes away during them and comes back after.
    let calls = (0..4u64).map(|i| {
        let hark = &hark;
        async move { a_call(hark, 210 + i).await }
    });
    let run = futures::future::join_all(calls);
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(6)).await;
        proxy.restore();
    };
    let (sids, ()) = tokio::join!(run, outage);
    assert_complete(&api, &sids).await;
    let m = hark.metrics().await;
    assert!(
        m.get("hark_store_rows_spooled_total") > 0.0,
        "the outage was felt"
    );
    assert_eq!(
        m.get("hark_store_spool_rows"),
        0.0,
        "the spool was replayed"
    );
    assert!(hark.logs().contains("spool replayed"));
    let (_, page) = api.get("/api/v1/calls").await;
    assert_eq!(page["total"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_what_the_spool_still_holds() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let admin = node.token("admin", "ops");
    node.db = proxy.url(&node.db);
    proxy.cut();
    let mut first = node.start(&[]);
    let sid = a_call(&first, 220).await;
    // SIGTERM: the node drains and stops with its records on disk.
    std::process::Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(first.wait_exit(Duration::from_secs(40)).await, Some(0));
    let spooled = std::fs::read_to_string(node.data.join("spool/spool.jsonl")).unwrap();
    assert!(spooled.lines().count() >= 6, "{spooled}");
    assert!(
        !spooled.contains("seconds to say"),
        "the spool holds no transcript in clear"
    );
    drop(first);
    proxy.restore();
    let second = node.start(&[]);
    let api = Api {
        hark: &second,
        token: admin,
    };
    assert_complete(&api, &[sid]).await;
    assert!(second.logs().contains("spool replayed"));
    let spooled = std::fs::read_to_string(node.data.join("spool/spool.jsonl")).unwrap();
    assert!(spooled.is_empty());
}

pub const TOKEN: &str = "twilio-secret";

pub fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    hark_runtime::twilio::signature::sign(TOKEN, url, &params)
}

#[tokio::test]
async fn twilio_requests_must_be_signed_when_an_auth_token_is_set() {
    let node = Node::sqlite();
    let hark = node.start(&[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let params = [
        ("CallSid", "CA1"),
        ("From", "+14155550103"),
        ("To", "+14155550106"),
    ];
    let voice = format!("https://{}/twilio/voice", hark.addr);
    let post = |sig: Option<String>, body: &[(&str, &str)]| {
        let mut req = hark.http().post(hark.url("/twilio/voice")).form(body);
        if let Some(sig) = sig {
            req = req.header("X-Twilio-Signature", sig);
        }
        req.send()
    };
    assert_eq!(post(None, &params).await.unwrap().status(), 403, "missing");
    let good = sign(&voice, &params);
    assert_eq!(
        post(Some(good.clone()), &params).await.unwrap().status(),
        200
    );
    let tampered = [
        ("CallSid", "CA1"),
        ("From", "+14155550107"),
        ("To", "+14155550106"),
    ];
    assert_eq!(
        post(Some(good), &tampered).await.unwrap().status(),
        403,
        "body"
    );
    let other_url = sign("https://evil.example/twilio/voice", &params);
    assert_eq!(
        post(Some(other_url), &params).await.unwrap().status(),
        403,
        "url"
    );
    assert_eq!(
        post(Some("bm90IGl0".into()), &params)
            .await
            .unwrap()
            .status(),
        403,
        "header"
    );

    // The Media Streams upgrade signs the wss:// URL alone.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let unsigned = tokio_tungstenite::connect_async(hark.media_url()).await;
    assert!(
        matches!(unsigned, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403)
    );
    let mut req = hark.media_url().into_client_request().unwrap();
    let sig = sign(&format!("wss://{}/twilio/media", hark.addr), &[]);
    req.headers_mut()
        .insert("X-Twilio-Signature", sig.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());

    // Status callbacks too.
    let status = [
        ("CallSid", "CA1"),
        ("CallStatus", "completed"),
        ("SequenceNumber", "0"),
    ];
    let sig = sign(&format!("https://{}/twilio/status", hark.addr), &status);
    let send = |sig: Option<&str>| {
        let mut req = hark.http().post(hark.url("/twilio/status")).form(&status);
        if let Some(s) = sig {
            req = req.header("X-Twilio-Signature", s);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 403);
    assert_eq!(send(Some(&sig)).await.unwrap().status(), 204);
    // A status Twilio does not document, or a call SID of another shape, is
    // refused (signed or not).
    for bad in [
        [
            ("CallSid", "CA1"),
            ("CallStatus", "exploded"),
            ("SequenceNumber", "1"),
        ],
        [
            ("CallSid", "XX1"),
            ("CallStatus", "completed"),
            ("SequenceNumber", "1"),
        ],
    ] {
        let sig = sign(&format!("https://{}/twilio/status", hark.addr), &bad);
        let res = hark
            .http()
            .post(hark.url("/twilio/status"))
            .form(&bad)
            .header("X-Twilio-Signature", sig)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad:?}");
    }
    let m = hark.metrics().await;
    assert_eq!(m.sum("hark_twilio_signature_failures_total", &[]), 6.0);
    assert_eq!(
        m.sum(
            "hark_twilio_signature_failures_total",
            &[("reason", "missing")]
        ),
        3.0
    );
}

#[tokio::test]
async fn without_an_auth_token_hark_says_requests_are_not_verified() {
    let hark = Node::sqlite().start(&[]);
    assert!(hark.logs().contains("Twilio requests are NOT verified"));
}

#[tokio::test]
async fn every_route_admits_exactly_its_roles() {
    let node = Node::sqlite();
    let tokens: Vec<(&str, String)> = ["admin", "ai_ops", "agent", "viewer"]
        .into_iter()
        .map(|r| (r, node.token(r, &format!("{r}-token"))))
        .collect();
    let hark = node.start(&[
        ("HARK_API_REQUESTS_PER_SECOND", "1000"),
        ("HARK_API_AUTH_FAILURES_PER_MINUTE", "1000"),
    ]);
    let routes = hark_runtime::api::routes();
    assert_eq!(
        routes.len(),
        42,
        "every route of the API, from its handlers"
    );
    for hark_runtime::api::Route {
        method,
        path: route,
        roles,
    } in routes
    {
        let path = route
            .replace("{call_sid}", "CA404")
            .replace("{number}", "+14155550100")
            .replace("{name}", "e2e");
        let req = |token: Option<&str>| {
            let mut r = match *method {
                "GET" => hark.http().get(hark.url(&path)),
                "POST" => hark
                    .http()
                    .post(hark.url(&path))
                    .json(&serde_json::json!({"number": "+14155550100", "reason": "matrix"})),
                "PUT" => hark
                    .http()
                    .put(hark.url(&path))
                    .json(&serde_json::json!({"policy": "e2e", "lists": ["matrix"]})),
                _ => hark.http().delete(hark.url(&path)),
            };
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        assert_eq!(
            req(None).await.unwrap().status(),
            401,
            "{method} {route} without a token"
        );
        assert_eq!(
            req(Some("hark_wrong")).await.unwrap().status(),
            401,
            "{method} {route} with a bad token"
        );
        for (role, token) in &tokens {
            // Admin's drain would stop this node: `server::drain_*` has it.
            if *role == "admin" && route == "/api/v1/node/drain" {
                continue;
            }
            let status = req(Some(token)).await.unwrap().status().as_u16();
            let allowed = roles.iter().any(|r| r.as_str() == *role);
            if allowed {
                assert!(
                    ![401, 403].contains(&status) && status < 500,
                    "{method} {route} as {role}: {status}"
                );
            } else {
                assert_eq!(status, 403, "{method} {route} as {role}");
            }
        }
    }
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_message_never_a_500() {
    let node = Node::sqlite();
    let token = node.token("admin", "ops");
    let hark = node.start(&[]);
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/api/v1/calls?limit=0", None, 400),
        ("GET", "/api/v1/calls?limit=abc", None, 400),
        ("GET", "/api/v1/calls?since=yesterday", None, 400),
        ("GET", "/api/v1/calls?status=maybe", None, 400),
        ("GET", "/api/v1/calls?offset=-1", None, 400),
        ("GET", "/api/v1/calls?bogus=1", None, 400),
        ("GET", "/api/v1/calls/CA%27%3B%20DROP", None, 400),
        ("GET", "/api/v1/calls/CAnope", None, 404),
        ("GET", "/api/v1/calls/CAnope/transcript", None, 404),
        ("GET", "/api/v1/audit?limit=5000", None, 400),
        ("POST", "/api/v1/blocklist", Some("{not json"), 400),
        (
            "POST",
            "/api/v1/blocklist",
            Some(r#"{"number": "+14155550101"}"#),
            422,
        ),
        (
            "POST",
            "/api/v1/blocklist",
            Some(r#"{"number": "call me", "reason": "x"}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/blocklist",
            Some(r#"{"number": "+14155550101", "reason": ""}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/blocklist",
            Some(r#"{"number": "+14155550101", "reason": "x", "extra": 1}"#),
            422,
        ),
        ("DELETE", "/api/v1/blocklist/+14155550102", None, 404),
        ("DELETE", "/api/v1/blocklist/banana", None, 400),
        ("GET", "/api/v1/policies/nope", None, 404),
        ("POST", "/api/v1/policies/nope/reload", None, 404),
        ("GET", "/api/v1/nowhere", None, 404),
    ];
    for (method, path, body, want) in cases {
        let mut req = match *method {
            "GET" => hark.http().get(hark.url(path)),
            "POST" => hark.http().post(hark.url(path)),
            _ => hark.http().delete(hark.url(path)),
        }
        .bearer_auth(&token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, *want, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_blocked_number_is_rejected_and_the_record_says_why() {
    let node = Node::sqlite();
    let token = node.token("agent", "desk");
    let hark = node.start(&[("HARK_CALLER_CALLS_PER_HOUR", "2")]);
    let api = Api {
        hark: &hark,
        token: token.clone(),
    };
    let res = hark
        .http()
        .post(hark.url("/api/v1/blocklist"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"number": "+14155550101", "reason": "abusive"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let voice = |call: &str, from: &str| {
        hark.http()
            .post(hark.url("/twilio/voice"))
            .form(&[("CallSid", call), ("From", from), ("To", "+14155550106")])
            .send()
    };
    let xml = voice("CAblocked", "+14155550101")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<Reject"), "{xml}");
    api.wait("/api/v1/calls/CAblocked", |c| {
        c["end_reason"] == "rejected_blocked"
    })
    .await;
    // A caller over the hourly limit is rejected too.
    for i in 0..2 {
        let xml = voice(&format!("CAok{i}"), "+14155550105")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(xml.contains("<Connect>"), "{xml}");
    }
    let xml = voice("CAover", "+14155550105")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<Reject"), "{xml}");
    let m = hark.metrics().await;
    assert_eq!(m.get("hark_calls_rejected_total{reason=\"blocked\"}"), 1.0);
    assert_eq!(
        m.get("hark_calls_rejected_total{reason=\"rate_limited\"}"),
        1.0
    );
    // Logs never show the full number.
    assert!(!hark.logs().contains("5550001111"));
}

#[tokio::test]
async fn a_bad_policy_reload_is_refused_and_the_old_one_stays_live() {
    let node = Node::sqlite();
    let token = node.token("ai_ops", "tuner");
    let dir = temp_dir("hark-policy");
    let file = dir.join("e2e.toml");
    let good = std::fs::read_to_string(repo_path("tests/policies/e2e.toml")).unwrap();
    std::fs::write(&file, &good).unwrap();
    let hark = node.start_with_policy(file.to_str().unwrap(), &[]);
    let api = Api {
        hark: &hark,
        token: token.clone(),
    };
    let reload = || {
        hark.http()
            .post(hark.url("/api/v1/policies/e2e/reload"))
            .bearer_auth(&token)
            .send()
    };
    std::fs::write(
        &file,
        good.replace("endpointing_ms = 500", "endpointing_ms = 5"),
    )
    .unwrap();
    let res = reload().await.unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("vad.endpointing_ms"),
        "{body}"
    );
    let (_, live) = api.get("/api/v1/policies/e2e").await;
    assert_eq!(
        live["vad"]["endpointing_ms"], 500,
        "the old policy is still live"
    );
    let m = hark.metrics().await;
    assert_eq!(
        m.sum("hark_policy_reloads_total", &[("result", "invalid")]),
        1.0
    );
    // A call still works on it.
    let caller = hark.caller(230).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    std::fs::write(
        &file,
        good.replace("name = \"e2e\"", "name = \"e2e\"\nversion = \"2\""),
    )
    .unwrap();
    let res = reload().await.unwrap();
    assert_eq!(res.status(), 200);
    let m = hark.metrics().await;
    assert_eq!(
        m.sum("hark_policy_reloads_total", &[("result", "applied")]),
        1.0
    );
    let (_, list) = api.get("/api/v1/policies").await;
    assert_eq!(list[0]["version"], "2", "{list}");
    assert_eq!(list[0]["active"], true);
}

#[tokio::test]
async fn a_token_over_its_request_rate_gets_429() {
    let node = Node::sqlite();
    let token = node.token("viewer", "dash");
    let hark = node.start(&[("HARK_API_REQUESTS_PER_SECOND", "2")]);
    let api = Api { hark: &hark, token };
    // A burst of twice the rate passes, then the bucket is empty.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(api.get("/api/v1/node").await.0);
    }
    assert_eq!(&codes[..4], [200, 200, 200, 200], "{codes:?}");
    assert!(codes[4..].contains(&429), "{codes:?}");
    let (code, body) = api.get("/api/v1/node").await;
    if code == 429 {
        assert!(body["error"].as_str().unwrap().contains("rate limit"));
    }
}
