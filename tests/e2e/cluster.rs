//! The cluster (issue 17), with real processes: three `hark serve` on
//! 127.0.0.1–3 sharing one PostgreSQL and one Redis of the test's own (so
//! it can be stopped and started), the Twilio fake signing every request.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fakes::Fakes;
use crate::fakes::twilio::Core;
use crate::records::{Node, fresh_pg};
use crate::support::{Hark, QUIET, repo_path, speech, temp_dir};

const BUSINESS: &str = "+14155550100";

/// A Redis server of the test's own, on a port of its own.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
}

impl RedisProc {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self { child: None, port };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/services.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come up on {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The node ids registered now.
    pub async fn nodes(&self) -> Vec<String> {
        let mut c = self.conn().await;
        redis::cmd("ZRANGE")
            .arg("{hark}:nodes")
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .unwrap()
    }

    pub async fn wait_nodes(&self, want: &[&str]) {
        for _ in 0..200 {
            let mut got = self.nodes().await;
            got.sort();
            if got == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "registered nodes never became {want:?}: {:?}",
            self.nodes().await
        );
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node of the cluster: `hark serve` on `ip`, named `name`.
pub fn start_node(
    fakes: &[(String, String)],
    db: &str,
    redis: &str,
    name: &str,
    ip: &str,
    extra: &[(&str, &str)],
) -> Hark {
    let node = Node {
        data: temp_dir("hark-cluster"),
        db: db.to_owned(),
    };
    let mut env = node.env();
    env.extend(fakes.iter().cloned());
    for (k, v) in [
        ("HARK_NODE", name),
        ("HARK_REDIS_URL", redis),
        ("HARK_CLUSTER__HEARTBEAT_MS", "200"),
        ("HARK_CLUSTER__TTL_MS", "1500"),
        ("HARK_CLUSTER__CAPACITY", "200"),
        ("HARK_CALLER_CALLS_PER_HOUR", "0"),
        ("HARK_START_TIMEOUT_SECS", "30"),
        ("HARK_OUTBOUND__CALLER_ID", BUSINESS),
    ] {
        env.push((k.into(), v.into()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Hark::spawn(
        &format!("{ip}:0"),
        &["--policy", &repo_path("tests/policies/live.toml")],
        &env,
        None,
    )
}

/// The node a TwiML answer's stream goes to (by its address), or `busy`/`reject`.
fn stream_target(xml: &str, nodes: &BTreeMap<String, String>) -> String {
    let Some(url) = xml
        .split("<Stream url=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    else {
        return if xml.contains("<Say>") {
            "busy".into()
        } else {
            "reject".into()
        };
    };
    nodes
        .iter()
        .find(|(_, addr)| url.contains(addr.as_str()))
        .map_or_else(|| url.to_owned(), |(name, _)| name.clone())
}

fn sid(n: u64) -> String {
    format!("CA{n:032x}")
}

/// The voice webhook, as Twilio calls it (signed), at `hark`.
async fn voice(core: &Core, hark: &Hark, n: u64) -> Result<String, String> {
    let from = format!("+1415555{:04}", n % 10_000);
    let params = form(&[
        ("CallSid", &sid(n)),
        ("From", &from),
        ("To", BUSINESS),
        ("Direction", "inbound"),
    ]);
    core.post_signed(&hark.url("/twilio/voice"), &params).await
}

/// A Twilio request's form.
fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Stops `pid` for 40 ms of every 50 until `stop`: a node slowed on purpose
/// (a noisy neighbour taking most of its CPU).
fn slow_down(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let signal = |s: &str| {
            let _ = Command::new("kill").args([s, &pid.to_string()]).status();
        };
        while !stop.load(Ordering::Relaxed) {
            signal("-STOP");
            std::thread::sleep(Duration::from_millis(40));
            signal("-CONT");
            std::thread::sleep(Duration::from_millis(10));
        }
        signal("-CONT");
    })
}

fn signal(hark: &Hark, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &hark.pid().to_string()])
        .status();
}

#[tokio::test]
async fn placement_follows_queue_depth_avoids_a_dead_node_and_survives_redis() {
    let fakes = Fakes::start().await;
    let fenv = fakes.env();
    let db = fresh_pg().await;
    let mut redis = RedisProc::start();
    let a = start_node(&fenv, &db, &redis.url(), "a", "127.0.0.1", &[]);
    let b = start_node(&fenv, &db, &redis.url(), "b", "127.0.0.2", &[]);
    let c = start_node(&fenv, &db, &redis.url(), "c", "127.0.0.3", &[]);
    let addrs: BTreeMap<String, String> = [("a", &a), ("b", &b), ("c", &c)]
        .into_iter()
        .map(|(n, h)| (n.to_owned(), h.addr.clone()))
        .collect();
    redis.wait_nodes(&["a", "b", "c"]).await;

    // `c` is slowed on purpose (stopped 40 ms of every 50): its workers
    // run late, its queue depth says so, and it gets fewer calls.
    let stop = Arc::new(AtomicBool::new(false));
    let slowing = slow_down(c.pid(), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    for batch in 0..30u64 {
        let answers = futures::future::join_all((0..10).map(|i| {
            let (fakes, a) = (&fakes, &a);
            async move {
                let started = std::time::Instant::now();
                let xml = voice(&fakes.twilio.core, a, 1_000 + batch * 10 + i)
                    .await
                    .unwrap();
                (xml, started.elapsed())
            }
        }))
        .await;
        for (xml, took) in answers {
            *spread.entry(stream_target(&xml, &addrs)).or_default() += 1;
            latencies.push(took);
        }
    }
    stop.store(true, Ordering::Relaxed);
    slowing.join().unwrap();
    latencies.sort();
    eprintln!(
        "placements {spread:?}; webhook → TwiML p50 {:?}, p99 {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    assert_eq!(spread.values().sum::<usize>(), 300, "{spread:?}");
    let (na, nb, nc) = (
        spread["a"],
        spread["b"],
        spread.get("c").copied().unwrap_or(0),
    );
    assert!(
        nc * 5 < na.min(nb) * 4,
        "the slowed node should get clearly fewer: {spread:?}"
    );
    assert!(na > nc && nb > nc, "{spread:?}");
    let depth = a.metrics().await;
    assert!(
        depth.has("hark_node_queue_depth"),
        "queue depth is exported"
    );

    // `b` is killed: once its entry lapses (1.5 s) no call goes there.
    signal(&b, "-KILL");
    redis.wait_nodes(&["a", "c"]).await;
    for n in 0..40 {
        let xml = voice(&fakes.twilio.core, &a, 5_000 + n).await.unwrap();
        let to = stream_target(&xml, &addrs);
        assert!(to == "a" || to == "c", "placed on {to}: {xml}");
    }

    // Redis goes away: calls still land (here), /readyz says degraded but
    // keeps the node in rotation.
    redis.stop();
    for n in 0..10 {
        let xml = voice(&fakes.twilio.core, &a, 6_000 + n).await.unwrap();
        assert_eq!(stream_target(&xml, &addrs), "a", "{xml}");
    }
    let ready = a.http().get(a.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["cluster"]["redis"], "down", "{body}");
    let m = a.metrics().await;
    assert!(
        m.sum(
            "hark_cluster_placements_total",
            &[("result", "local_fallback")]
        ) >= 10.0,
        "fallbacks counted"
    );
    // Redis is back (empty: it kept nothing): both nodes register again.
    redis.restart();
    redis.wait_nodes(&["a", "c"]).await;
    for _ in 0..100 {
        let body: serde_json::Value = a
            .http()
            .get(a.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let xml = voice(&fakes.twilio.core, &a, 7_000).await.unwrap();
    let to = stream_target(&xml, &addrs);
    assert!(to == "a" || to == "c", "{xml}");
    drop(c);
}

/// `(node, end_reason)` of a call on record, once `f` accepts it.
async fn call_row(
    db: &str,
    call: &str,
    f: impl Fn(&Option<String>) -> bool,
) -> (String, Option<String>) {
    use sqlx::Connection;
    for _ in 0..200 {
        let mut conn = sqlx::postgres::PgConnection::connect(db).await.unwrap();
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT node, end_reason FROM calls WHERE call_sid = $1")
                .bind(call)
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if let Some(row) = row
            && f(&row.1)
        {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {call} never matched on record");
}

async fn turns_on_record(db: &str, call: &str, n: i64) {
    use sqlx::Connection;
    for _ in 0..200 {
        let mut conn = sqlx::postgres::PgConnection::connect(db).await.unwrap();
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM turns WHERE call_sid = $1")
            .bind(call)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {call} never had {n} turns on record");
}

#[tokio::test]
async fn a_call_survives_its_node_and_goes_on_with_its_history() {
    let fakes = Fakes::start().await;
    let fenv = fakes.env();
    let db = fresh_pg().await;
    let redis = RedisProc::start();
    // `a` takes the webhooks (the public address) and no calls of its own:
    // sized for one call, any placement would pass its limit.
    // Entries last 5 s: `c` is frozen below for longer than the usual TTL.
    let ttl = ("HARK_CLUSTER__TTL_MS", "5000");
    let a = start_node(
        &fenv,
        &db,
        &redis.url(),
        "a",
        "127.0.0.1",
        &[("HARK_CLUSTER__CAPACITY", "1"), ttl],
    );
    let c = start_node(&fenv, &db, &redis.url(), "c", "127.0.0.3", &[ttl]);
    redis.wait_nodes(&["a", "c"]).await;
    let t = &fakes.twilio;
    t.point_at(&format!("http://{}", a.addr));

    // Two calls land on `c`; the caller of the first talks with the bot.
    // The bot learns something in its first answer: a slot.
    fakes.openai.reply(crate::fakes::openai::Reply::Tool {
        text: String::new(),
        name: "record_outcome".into(),
        arguments: r#"{"plan": "pro"}"#.into(),
    });
    let kept = t.incoming("+14155550123", BUSINESS).await;
    let gone = t.incoming("+14155550124", BUSINESS).await;
    let caller = t.stream(&kept, 0, Duration::from_secs(10)).await.unwrap();
    t.stream(&gone, 0, Duration::from_secs(10)).await.unwrap();
    assert!(caller.wait_idle(QUIET, Duration::from_secs(10)).await);
    let asked = caller.say(speech("hours")).await.unwrap();
    caller
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("the bot's answer on c");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(10)).await);
    let first_words = fakes.openai.heard();
    assert_eq!(first_words.len(), 1, "{first_words:?}");
    let (node, _) = call_row(&db, &kept, |_| true).await;
    assert_eq!(node, "c");
    // An API action that lands on `a` reaches the call on `c`: the live
    // policy does not transfer, which only `c` (holding the call) can say.
    let admin = Node {
        data: temp_dir("hark-cluster"),
        db: db.clone(),
    }
    .token("admin", "ops");
    let res = a
        .http()
        .post(a.url(&format!("/api/v1/calls/{kept}/transfer")))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"target": "sales"}))
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    let body = res.text().await.unwrap();
    assert_eq!(code, 409, "answered by c: {body}");
    assert!(body.contains("transfer"), "{body}");
    // The bot's answer is on record (greeting, words, answer) before `c`
    // goes, and so is the slot it learned (no disposition yet).
    turns_on_record(&db, &kept, 3).await;
    let outcome = |hark: &Hark| {
        let (url, admin) = (hark.url(&format!("/api/v1/calls/{kept}")), admin.clone());
        let http = hark.http().clone();
        async move {
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let mut live = serde_json::Value::Null;
    for _ in 0..100 {
        live = outcome(&a).await;
        if live["outcome"]["plan"] == "pro" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live["outcome"]["plan"], "pro", "{live}");
    assert!(live["disposition"].is_null(), "{live}");

    // A node of its own for the callers to move to, then `c` dies. The
    // second caller hangs up as it happens (while `c` is frozen, so it never
    // hears of it): nobody comes back for that call.
    let b = start_node(&fenv, &db, &redis.url(), "b", "127.0.0.2", &[ttl]);
    redis.wait_nodes(&["a", "b", "c"]).await;
    signal(&c, "-STOP");
    t.hang_up(&gone).await;
    signal(&c, "-KILL");

    // Twilio asks `a` (the action URL); the caller hears the line and goes
    // on, on `b`, with the call's history.
    let moved = t
        .stream(&kept, 1, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the caller's call moved to a live node\n{}\n{:?}",
                a.logs(),
                t.requests()
            )
        });
    assert!(
        t.call(&kept, |c| c
            .heard
            .iter()
            .any(|h| h.contains("line dropped")))
            .unwrap()
    );
    let asked = moved.say(speech("yes")).await.unwrap();
    moved
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("the bot answers on b");
    let last = fakes.openai.chat_requests().last().cloned().unwrap();
    let users: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        users.len(),
        2,
        "the history came along: {last}\n{}",
        b.logs()
    );
    assert_eq!(users[0], first_words[0]);
    let said: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(said.len(), 2, "the greeting and the answer from c: {last}");
    assert!(
        b.logs().contains("call taken over from a lost node"),
        "{}",
        b.logs()
    );

    // The call nobody came back for is closed by a survivor once `c`'s entry lapses.
    let (_, reason) = call_row(&db, &gone, |r| r.as_deref() == Some("node_lost")).await;
    assert_eq!(reason.as_deref(), Some("node_lost"));
    let (_, reason) = call_row(&db, &kept, |_| true).await;
    assert_ne!(
        reason.as_deref(),
        Some("node_lost"),
        "the moved call goes on"
    );

    // The caller hangs up; the record ends as any call's does, with the
    // slot learned on `c` in the outcome `b` decided.
    t.hang_up(&kept).await;
    let (_, reason) = call_row(&db, &kept, |r| r.is_some()).await;
    assert_ne!(reason.as_deref(), Some("node_lost"));
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        last = outcome(&b).await;
        if !last["disposition"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["outcome"]["plan"], "pro", "{last}");
    assert!(last["disposition"].is_string(), "{last}");

    // A call Hark ended gets `<Hangup/>` at the action URL.
    let params = form(&[
        ("CallSid", &kept),
        ("From", "+14155550123"),
        ("To", BUSINESS),
    ]);
    let xml = t
        .core
        .post_signed(&a.url("/twilio/stream-ended?policy=live"), &params)
        .await
        .unwrap();
    assert!(xml.contains("<Hangup/>"), "{xml}");
    // Unsigned, it is refused.
    let res = a
        .http()
        .post(a.url("/twilio/stream-ended?policy=live"))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

/// `hark drain` against `hark`, as an admin.
fn hark_drain(hark: &Hark, token: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("drain")
        .env("HARK_API_URL", format!("http://{}", hark.addr))
        .env("HARK_API_TOKEN", token)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_rolling_restart_of_three_nodes_under_load_loses_no_call() {
    let fakes = Fakes::start().await;
    let fenv = fakes.env();
    let db = fresh_pg().await;
    let redis = RedisProc::start();
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let names = ["a", "b", "c"];
    let mut nodes: Vec<Hark> = names
        .iter()
        .zip(ips)
        .map(|(n, ip)| start_node(&fenv, &db, &redis.url(), n, ip, &[]))
        .collect();
    redis.wait_nodes(&names).await;
    let admin = Node {
        data: temp_dir("hark-cluster"),
        db: db.clone(),
    }
    .token("admin", "ops");
    let t = Arc::new(fakes.twilio);
    t.point_at(&format!("http://{}", nodes[1].addr));

    // Load: a call every 150 ms; each caller stays 2 s, then hangs up.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (t, running) = (Arc::clone(&t), Arc::clone(&running));
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut n = 0u32;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let t = Arc::clone(&t);
                calls.push(tokio::spawn(async move {
                    let sid = t.incoming(&format!("+1415666{n:04}"), BUSINESS).await;
                    let heard = match t.stream(&sid, 0, Duration::from_secs(10)).await {
                        Some(caller) => caller
                            .wait_media_since(caller.connected_at(), Duration::from_secs(10))
                            .await
                            .is_some(),
                        None => false,
                    };
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    t.hang_up(&sid).await;
                    (sid, heard)
                }));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            futures::future::join_all(calls).await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        // The public address moves off the node about to go (a load
        // balancer follows /readyz, which says draining).
        t.point_at(&format!("http://{}", nodes[(i + 1) % 3].addr));
        let name = names[i];
        if i == 2 {
            signal(&nodes[i], "-TERM");
        } else {
            let out = hark_drain(&nodes[i], &admin);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // A webhook that still reaches the draining node is placed elsewhere.
            let xml = voice(&t.core, &nodes[i], 90_000 + i as u64).await.unwrap();
            let stream = xml.split("<Stream url=\"").nth(1).unwrap_or("");
            assert!(
                !stream.is_empty() && !stream.starts_with(&format!("ws://{}/", nodes[i].addr)),
                "placed on the draining node: {xml}"
            );
        }
        let code = nodes[i].wait_exit(Duration::from_secs(30)).await;
        assert_eq!(
            code,
            Some(0),
            "{name} exits once its calls are over\n{}",
            nodes[i].logs()
        );
        assert!(
            !redis.nodes().await.contains(&name.to_owned()),
            "{name} left the registry"
        );
        assert!(nodes[i].logs().contains("left the cluster registry"));
        nodes[i] = start_node(&fenv, &db, &redis.url(), name, ips[i], &[]);
        redis.wait_nodes(&names).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, Ordering::Relaxed);
    let calls = load.await.unwrap();
    let lost: Vec<&String> = calls
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .filter(|(_, heard)| !heard)
        .map(|(sid, _)| sid)
        .collect();
    assert!(calls.len() > 40, "{} calls", calls.len());
    assert!(
        lost.is_empty(),
        "calls lost in the rolling restart: {lost:?}"
    );
}

#[tokio::test]
async fn with_every_node_full_the_caller_hears_the_busy_line() {
    let fakes = Fakes::start().await;
    let fenv = fakes.env();
    let db = fresh_pg().await;
    let redis = RedisProc::start();
    // Sized for one call: one more would pass the 0.9 limit at once.
    let a = start_node(
        &fenv,
        &db,
        &redis.url(),
        "a",
        "127.0.0.1",
        &[("HARK_CLUSTER__CAPACITY", "1")],
    );
    redis.wait_nodes(&["a"]).await;
    let xml = voice(&fakes.twilio.core, &a, 9_000).await.unwrap();
    assert!(
        xml.contains("<Say>All our lines are busy right now.") && xml.contains("<Hangup/>"),
        "{xml}"
    );
    assert!(!xml.contains("<Stream"), "{xml}");
    let (_, reason) = call_row(&db, &sid(9_000), |r| r.is_some()).await;
    assert_eq!(reason.as_deref(), Some("rejected_no_capacity"));
    let m = a.metrics().await;
    assert_eq!(
        m.sum("hark_cluster_placements_total", &[("result", "none")]),
        1.0
    );
}

#[tokio::test]
async fn a_cluster_node_must_say_where_it_is_and_needs_postgres() {
    let db = fresh_pg().await;
    let run = |env: &[(&str, &str)]| {
        let node = Node {
            data: temp_dir("hark-cluster"),
            db: db.clone(),
        };
        let out = Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["serve", "--listen", "0.0.0.0:0"])
            .envs(node.env())
            .env("TWILIO_AUTH_TOKEN", "t")
            .env("HARK_REDIS_URL", "redis://127.0.0.1:1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[]);
    assert!(err.contains("cluster.advertise_url"), "{err}");
    let err = run(&[("HARK_DATABASE_URL", "sqlite://x.db")]);
    assert!(
        err.contains("redis_url") && err.contains("PostgreSQL"),
        "{err}"
    );
}
