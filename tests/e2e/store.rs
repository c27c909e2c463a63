//! Records that must not be lost: a database that stops answering, a node
//! stopped or killed mid-call, transient errors, a failing migration, rows
//! the database once refused.

use std::process::Command;
use std::time::Duration;

use hark_runtime::store::{Store, StoreError};

use crate::records::{Api, Node, Proxy, a_call, assert_complete, fresh_pg};
use crate::support::{GREETING, QUIET};

/// A network that drops packets without resetting: writes must time out to
/// the spool within seconds, not hang for minutes; everything is stored
/// once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_mid_call_is_spooled_for_within_seconds() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let admin = node.token("admin", "ops");
    node.db = proxy.url(&node.db);
    let hark = node.start(&[]);
    let api = Api {
        hark: &hark,
        token: admin,
    };
    let calls = futures::future::join_all((0..2u64).map(|i| {
        let hark = &hark;
        async move { a_call(hark, 800 + i).await }
    }));
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The network goes quiet in the middle of the writer's next
        // transaction (the first statement that binds a call's SID), after
        // it has its connection: only a deadline on the write gets it out.
        proxy.stall_on(&format!("CA{:032x}", 800));
        let stalled = tokio::time::Instant::now();
        // The next batch's write has 5 s, then the spool takes it.
        let mut spooled = 0.0;
        while stalled.elapsed() < Duration::from_secs(20) && spooled == 0.0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            spooled = hark.metrics().await.get("hark_store_rows_spooled_total");
        }
        let took = stalled.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
        (spooled, took)
    };
    let (sids, (spooled, took)) = tokio::join!(calls, outage);
    assert!(
        spooled > 0.0,
        "nothing was spooled while the database hung:\n{}",
        hark.logs()
    );
    assert!(
        took < Duration::from_secs(12),
        "spooled only after {took:?}"
    );
    assert_complete(&api, &sids).await;
    assert_eq!(
        hark.metrics().await.get("hark_store_records_dropped_total"),
        0.0
    );
}

/// SIGTERM while the database hangs: the node stops on time and what was
/// queued is in the spool; the next start stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_database_hangs_spools_the_queue_for_the_next_start() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let admin = node.token("admin", "ops");
    node.db = proxy.url(&node.db);
    let mut first = node.start(&[("HARK_SHUTDOWN_GRACE_SECS", "1")]);
    let caller = first.caller(810).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    proxy.stall();
    // A turn while the database hangs, then hang up.
    let asked = caller.say(crate::support::speech("order")).await.unwrap();
    caller
        .wait_media_since(asked.ended, Duration::from_secs(8))
        .await
        .expect("a reply");
    assert!(caller.wait_idle(QUIET, Duration::from_secs(20)).await);
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let signalled = tokio::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(first.wait_exit(Duration::from_secs(40)).await, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(30));
    let spooled = std::fs::read_to_string(node.data.join("spool/spool.jsonl")).unwrap();
    // The caller's turn, the reply and the end were queued; all are spooled.
    assert!(
        spooled.contains(r#""t":"call_end""#) && spooled.matches(r#""t":"turn""#).count() >= 2,
        "{spooled}"
    );
    drop(first);
    proxy.restore();
    let second = node.start(&[]);
    let api = Api {
        hark: &second,
        token: admin,
    };
    let sid = format!("CA{:032x}", 810);
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["end_reason"] == "stop"
        })
        .await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["carrier"], "twilio", "the carrier survives the spool");
    let (_, t) = api.get(&format!("/api/v1/calls/{sid}/transcript")).await;
    let speakers: Vec<&str> = t["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["speaker"].as_str().unwrap())
        .collect();
    assert_eq!(speakers, ["bot", "caller", "bot"], "{t}");
}

/// SIGKILL (or a panic that takes the process) leaves calls open on record:
/// the node closes its own when it starts again.
#[tokio::test]
async fn calls_left_open_by_a_killed_node_are_closed_when_it_restarts() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let mut first = node.start(&[]);
    let caller = first.caller(820).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    let sid = format!("CA{:032x}", 820);
    {
        let api = Api {
            hark: &first,
            token: admin.clone(),
        };
        api.wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["started_at"].is_i64()
        })
        .await;
    }
    Command::new("kill")
        .args(["-KILL", &first.pid().to_string()])
        .status()
        .unwrap();
    first.wait_exit(Duration::from_secs(10)).await;
    drop(first);
    let second = node.start(&[]);
    let api = Api {
        hark: &second,
        token: admin,
    };
    let call = api
        .wait(&format!("/api/v1/calls/{sid}"), |c| {
            c["end_reason"] == "node_restarted"
        })
        .await;
    assert!(call["ended_at"].as_i64() >= call["started_at"].as_i64());
}

#[tokio::test]
async fn a_migration_that_fails_stops_serve_with_the_reason() {
    let db = fresh_pg().await;
    let store = Store::open(&db).await.unwrap();
    store.migrate().await.unwrap();
    // The applied migration no longer matches the one hark ships.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea")
        .execute(store.pool())
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HARK_DATABASE_URL", &db)
        .env("HARK_DATA_DIR", crate::support::temp_dir("hark-migrate"))
        .env("HARK_STREAM_TOKEN_KEY", crate::records::STREAM_TOKEN_KEY)
        .env("HARK_PII_KEYS", crate::records::PII_KEYS)
        .env("HARK_PII_HASH_KEY", crate::records::PII_HASH_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("migrations failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_shows_the_store_and_its_spool() {
    let mut node = Node::postgres().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    node.db = proxy.url(&node.db);
    let hark = node.start(&[]);
    let readyz = || async {
        let res = hark.http().get(hark.url("/readyz")).send().await.unwrap();
        (
            res.status().as_u16(),
            res.json::<serde_json::Value>().await.unwrap(),
        )
    };
    for _ in 0..50 {
        if readyz().await.1["store"]["state"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readyz().await.1["store"]["state"], "up");
    proxy.cut();
    let caller = hark.caller(830).await;
    assert!(caller.wait_idle(QUIET, GREETING).await);
    caller.hangup();
    caller.wait_closed(Duration::from_secs(10)).await;
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (code, body) = readyz().await;
        if body["store"]["state"] == "down" && body["store"]["spool_rows"].as_u64() > Some(0) {
            // Calls go on with the database away: still ready.
            assert_eq!(code, 200, "{body}");
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz never showed the store down: {last}");
}

/// PostgreSQL errors that mean "try again later" — a standby or a demoted
/// primary (25006), serialization failures and deadlocks, an administrator
/// shutdown, a lock not available — and SQLite's BUSY (even as an extended
/// code) are outages, spooled for; not refusals, parked forever.
#[tokio::test]
async fn transient_database_errors_are_outages_not_refused_rows() {
    let store = Store::open(&fresh_pg().await).await.unwrap();
    for code in [
        "25006", "40001", "40P01", "57P01", "55P03", "08006", "53300",
    ] {
        let e = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$"
        )))
        .execute(store.pool())
        .await
        .unwrap_err();
        let e = StoreError::from_sqlx(e);
        assert!(e.is_unavailable(), "{code}: {e}");
    }
    // A statement the database refuses stays a refusal.
    let e = sqlx::query("SELECT * FROM no_such_table")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(!StoreError::from_sqlx(e).is_unavailable());

    // SQLite: another connection holds the write lock.
    let dir = crate::support::temp_dir("hark-busy");
    let url = format!("sqlite://{}/hark.db?mode=rwc", dir.display());
    let store = Store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    use sqlx::Connection;
    let mut holder = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let e = sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (1, 'a', 'b', 'c', 'd')",
    )
    .execute(store.pool())
    .await
    .unwrap_err();
    let e = StoreError::from_sqlx(e);
    assert!(e.is_unavailable(), "{e}");
    assert!(hark_runtime::store::sqlite_transient(517), "BUSY_SNAPSHOT");
    assert!(
        hark_runtime::store::sqlite_transient(262),
        "LOCKED_SHAREDCACHE"
    );
    assert!(!hark_runtime::store::sqlite_transient(19), "CONSTRAINT");
}

/// Rows the database refused once (a bug since fixed) wait in
/// `spool/rejected/`; `hark store replay-rejected` writes them, and keeps
/// what is still refused.
#[tokio::test]
async fn replay_rejected_writes_what_the_database_takes_and_keeps_the_rest() {
    let node = Node::sqlite();
    let rejected = node.data.join("spool/rejected");
    std::fs::create_dir_all(&rejected).unwrap();
    let row = |kind: &str, seq: i64| {
        format!(
            r#"{{"t":"event","call_sid":"CA900","seq":{seq},"kind":"{kind}","detail":"","at":1}}"#
        )
    };
    std::fs::write(
        rejected.join("spool.jsonl"),
        format!("{}\n{}\n", row("barge_in", 0), row("poison", 1)),
    )
    .unwrap();
    // The database (still) refuses one of them.
    let store = Store::open(&node.db).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::raw_sql("CREATE TRIGGER refuse BEFORE INSERT ON call_events WHEN NEW.kind = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        .execute(store.pool())
        .await
        .unwrap();
    let replay = || {
        Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["store", "replay-rejected"])
            .envs(node.env())
            .output()
            .unwrap()
    };
    let out = replay();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 row(s) written, 1 still refused"), "{text}");
    let left = std::fs::read_to_string(rejected.join("spool.jsonl")).unwrap();
    assert_eq!(left.lines().count(), 1);
    assert!(left.contains("poison"));
    sqlx::raw_sql("DROP TRIGGER refuse")
        .execute(store.pool())
        .await
        .unwrap();
    let out = replay();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(rejected.join("spool.jsonl"))
            .unwrap()
            .is_empty()
    );
    let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_events WHERE call_sid = 'CA900'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n.0, 2);
}

/// Retention erases what was said and personal details, and keeps the
/// calls, their turns' timing and their events: counts and durations stay.
#[tokio::test]
async fn retention_erases_text_details_and_slot_values_and_keeps_the_shape() {
    use hark_actors::records::Record;
    use hark_runtime::store::Row;
    let node = Node::sqlite();
    let store = Store::open(&node.db).await.unwrap();
    store.migrate().await.unwrap();
    let pii =
        hark_runtime::pii::Pii::from_spec(crate::records::PII_KEYS, crate::records::PII_HASH_KEY)
            .unwrap();
    let mut slots = serde_json::Map::new();
    slots.insert("plan".into(), "pro".into());
    let records = [
        Record::CallStarted {
            call_sid: "CA1".into(),
            stream_sid: "MZ1".into(),
            carrier: "twilio".into(),
            direction: "inbound".into(),
            from: "+14155550103".into(),
            to: "+14155550106".into(),
            policy: "p".into(),
            policy_version: "1".into(),
            node: "n".into(),
            started_at_ms: 1_000,
        },
        Record::Turn {
            call_sid: "CA1".into(),
            seq: 0,
            speaker: "caller".into(),
            text: "my card is 4111".into(),
            heard: None,
            interrupted: false,
            started_at_ms: 1_000,
            ended_at_ms: 2_000,
        },
        Record::Event {
            call_sid: "CA1".into(),
            seq: 0,
            kind: "dtmf".into(),
            detail: "4".into(),
            private: true,
            at_ms: 1_500,
        },
        Record::Outcome {
            call_sid: "CA1".into(),
            slots,
            disposition: Some("qualified".into()),
            sensitive: Vec::new(),
            callback: None,
            at_ms: 2_000,
        },
        Record::CallEnded {
            call_sid: "CA1".into(),
            ended_at_ms: 3_000,
            end_reason: "stop".into(),
        },
    ];
    let rows: Vec<Row> = records
        .into_iter()
        .map(|r| Row::from_record(r, &pii))
        .collect();
    store.write(&rows).await.unwrap();
    let purged = store.purge_personal(10_000).await.unwrap();
    assert_eq!((purged.turns, purged.events, purged.outcomes), (1, 1, 1));
    let call = store.call("CA1", &pii, false).await.unwrap().unwrap();
    assert_eq!(call.duration_ms, Some(2_000));
    assert_eq!(call.end_reason.as_deref(), Some("stop"));
    assert_eq!(call.outcome, None);
    let turns = store.transcript("CA1", &pii).await.unwrap();
    assert_eq!(turns.len(), 1, "the turn stays");
    assert_eq!(turns[0].text, "");
    assert_eq!(turns[0].ended_at - turns[0].started_at, 1_000);
    let events = store.events("CA1", &pii, false).await.unwrap();
    assert_eq!((events.len(), events[0].detail.as_str()), (1, ""));
    // Nothing newer is touched, and a second purge finds nothing.
    let again = store.purge_personal(10_000).await.unwrap();
    assert_eq!((again.turns, again.events, again.outcomes), (0, 0, 0));
}

/// The audit log cannot be rewritten, not even by Hark's own connection.
#[tokio::test]
async fn the_audit_log_is_append_only_in_the_database_itself() {
    for url in [Node::sqlite().db, fresh_pg().await] {
        let store = Store::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
            .audit("ops", "read_transcript", "CA1", "admin")
            .await
            .unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'nobody'",
            "DELETE FROM audit_log",
        ] {
            let e = sqlx::query(sql).execute(store.pool()).await;
            assert!(e.is_err(), "{url}: {sql} went through");
        }
        assert_eq!(store.audit_log(10).await.unwrap().len(), 1);
    }
}
