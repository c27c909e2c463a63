//! The agent directory (issue 15's first step): `hark agent` adds, lists and
//! sets agents, refusing bad input; a reservation is atomic — many calls
//! at once never get more of an agent than its `max_calls` — chosen by
//! skill and language, least recently used first, and an agent released
//! rests for its wrap-up before it is chosen again. On PostgreSQL (real
//! concurrency, `FOR UPDATE SKIP LOCKED`) and SQLite.

use std::time::Duration;

use hark_runtime::store::Store;
use hark_runtime::store::agents::Agent;

use crate::records::{Node, Proxy};

fn hark_agent(node: &Node, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("agent")
        .args(args)
        .envs(node.env())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn hark_agent_adds_lists_and_sets_agents_and_refuses_bad_input() {
    let node = Node::sqlite();
    let (ok, _, err) = hark_agent(
        &node,
        &[
            "add",
            "--name",
            "asha",
            "--address",
            "+14155550100",
            "--skills",
            "billing,sales",
            "--languages",
            "en,hi",
            "--max-calls",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = hark_agent(
        &node,
        &[
            "add",
            "--name",
            "desk",
            "--address",
            "sip:desk@pbx.example.com",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = hark_agent(&node, &["state", "asha", "available"]);
    assert!(ok, "{err}");
    let (_, list, _) = hark_agent(&node, &["list"]);
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "asha\t+14155550100\tavailable\t0/2\tbilling,sales\ten,hi",
            "desk\tsip:desk@pbx.example.com\toffline\t0/1\t\t"
        ]
    );
    for (args, says) in [
        (vec!["add", "--name", "x", "--address", "555"], "address"),
        (
            vec!["add", "--name", "bad name", "--address", "+14155550101"],
            "name",
        ),
        (
            vec![
                "add",
                "--name",
                "y",
                "--address",
                "+14155550101",
                "--max-calls",
                "0",
            ],
            "max_calls",
        ),
        (vec!["state", "asha", "asleep"], "state"),
        (vec!["state", "nobody", "busy"], "no agent"),
    ] {
        let (ok, _, err) = hark_agent(&node, &args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }
}

async fn directory(store: &Store, agents: &[(&str, &[&str], &[&str], i64)]) {
    store.migrate().await.unwrap();
    for (name, skills, languages, max_calls) in agents {
        let a = Agent {
            name: (*name).into(),
            address: "+14155550100".into(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            languages: languages.iter().map(|s| s.to_string()).collect(),
            max_calls: *max_calls,
            state: "available".into(),
            active_calls: 0,
            last_assigned_at: 0,
            wrap_up_until: 0,
        };
        store.upsert_agent(&a, 1).await.unwrap();
        assert!(store.set_agent_state(name, "available", 1).await.unwrap());
    }
}

async fn reservations(store: Store) {
    directory(&store, &[("one", &["billing"], &["en"], 1)]).await;
    // Sixteen calls at once for one place: exactly one gets it.
    let now = hark_actors::records::now_ms();
    let tries = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .reserve_agent(&format!("CA{i}"), "billing", "en", now)
                .await
        })
    });
    let mut got = Vec::new();
    for t in tries {
        if let Some(name) = t.await.unwrap().unwrap() {
            got.push(name);
        }
    }
    assert_eq!(got, ["one"]);
    // Released with a wrap-up: not chosen again until it is over.
    let holder = (0..16).map(|i| format!("CA{i}")).collect::<Vec<_>>();
    let mut released = None;
    for call in &holder {
        if let Some(a) = store.release_agent(call, 300, now).await.unwrap() {
            released = Some(a);
        }
    }
    assert_eq!(released.as_deref(), Some("one"));
    assert_eq!(
        store
            .reserve_agent("CAx", "billing", "en", now + 100)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .reserve_agent("CAy", "billing", "en", now + 400)
            .await
            .unwrap()
            .as_deref(),
        Some("one")
    );
    // A skill or language nobody has: nobody; busy or offline: not chosen.
    store.release_agent("CAy", 0, now + 400).await.unwrap();
    assert_eq!(
        store
            .reserve_agent("CAz", "sales", "", now + 500)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .reserve_agent("CAz", "", "hi", now + 500)
            .await
            .unwrap(),
        None
    );
    store.set_agent_state("one", "busy", now).await.unwrap();
    assert_eq!(
        store.reserve_agent("CAz", "", "", now + 500).await.unwrap(),
        None
    );

    // Least recently used first.
    directory(
        &store,
        &[("a", &["sales"], &["en"], 1), ("b", &["sales"], &["en"], 1)],
    )
    .await;
    let first = store
        .reserve_agent("CA100", "sales", "", now + 600)
        .await
        .unwrap()
        .unwrap();
    store.release_agent("CA100", 0, now + 700).await.unwrap();
    let second = store
        .reserve_agent("CA101", "sales", "", now + 800)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second, "the agent who waited longest is chosen");
    let agents = store.agents().await.unwrap();
    let count = |n: &str| agents.iter().find(|a| a.name == n).map(|a| a.active_calls);
    assert_eq!(count(&second), Some(1));
    assert_eq!(count(&first), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_on_postgres_are_atomic_and_least_recently_used() {
    let node = Node::postgres().await;
    reservations(Store::open(&node.db).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_on_sqlite_are_atomic_and_least_recently_used() {
    let node = Node::sqlite();
    tokio::time::timeout(Duration::from_secs(60), async {
        reservations(Store::open(&node.db).await.unwrap()).await
    })
    .await
    .unwrap();
}

/// `hark serve` holds several pools on one SQLite file (the record writer,
/// the admin API, the transfer desk): transactions that read, then write,
/// from all of them at once must wait for each other, not fail with
/// `database is locked` — a release that fails leaves an agent reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_from_several_pools_on_one_sqlite_file_never_fail_busy() {
    let node = Node::sqlite();
    let first = Store::open(&node.db).await.unwrap();
    directory(&first, &[("one", &["billing"], &["en"], 1_000)]).await;
    let now = hark_actors::records::now_ms();
    let pools = futures::future::join_all((0..4).map(|_| Store::open(&node.db))).await;
    let work = pools.into_iter().enumerate().map(|(p, store)| {
        tokio::spawn(async move {
            let store = store.unwrap();
            for i in 0..25 {
                let call = format!("CA{p}x{i}");
                let reserved = store.reserve_agent(&call, "billing", "en", now).await;
                assert_eq!(reserved.unwrap().as_deref(), Some("one"), "{call}");
                let released = store.release_agent(&call, 0, now).await;
                assert_eq!(released.unwrap().as_deref(), Some("one"), "{call}");
            }
        })
    });
    let done = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(work))
        .await
        .unwrap();
    for task in done {
        task.unwrap();
    }
    let agents = first.agents().await.unwrap();
    assert_eq!(agents[0].active_calls, 0);
}

/// A release the database refuses (it is gone for a moment) is tried
/// again until it lands: a reservation left over would keep the agent from
/// every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_refused_by_a_database_outage_lands_when_it_is_back() {
    let node = Node::postgres().await;
    let direct = Store::open(&node.db).await.unwrap();
    directory(&direct, &[("one", &["billing"], &["en"], 1)]).await;
    let now = hark_actors::records::now_ms();
    let held = direct.reserve_agent("CA1", "billing", "en", now).await;
    assert_eq!(held.unwrap().as_deref(), Some("one"));
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let store = Store::open(&proxy.url(&node.db)).await.unwrap();
    assert!(store.agents().await.is_ok());
    let active = || async { direct.agents().await.unwrap()[0].active_calls };
    proxy.cut();
    hark_runtime::carriers::twilio::desk::release(&store, "CA1", Duration::ZERO).await;
    assert_eq!(
        active().await,
        1,
        "released through a database that is gone?"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while active().await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the release was never tried again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_api_adds_agents_sets_their_state_and_refuses_bad_input() {
    let node = Node::sqlite();
    let admin = node.token("admin", "ops");
    let desk = node.token("agent", "desk");
    let hark = node.start(&[]);
    let post = |token: &str, path: &str, body: serde_json::Value| {
        hark.http()
            .post(hark.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let added = post(
        &admin,
        "/api/v1/agents",
        serde_json::json!({"name": "asha", "address": "+14155550100", "skills": "billing", "languages": "en", "max_calls": 2}),
    )
    .await
    .unwrap();
    assert_eq!(added.status().as_u16(), 201);
    for bad in [
        serde_json::json!({"name": "x", "address": "555"}),
        serde_json::json!({"name": "bad name", "address": "+14155550101"}),
        serde_json::json!({"name": "y", "address": "+14155550101", "max_calls": 0}),
    ] {
        let res = post(&admin, "/api/v1/agents", bad.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{bad}");
    }
    // An agent (role) may set availability; not add agents.
    let res = post(
        &desk,
        "/api/v1/agents",
        serde_json::json!({"name": "z", "address": "+14155550102"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let res = post(
        &desk,
        "/api/v1/agents/asha/state",
        serde_json::json!({"state": "available"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let res = post(
        &desk,
        "/api/v1/agents/asha/state",
        serde_json::json!({"state": "asleep"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let res = post(
        &desk,
        "/api/v1/agents/nobody/state",
        serde_json::json!({"state": "busy"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let list: serde_json::Value = hark
        .http()
        .get(hark.url("/api/v1/agents"))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "asha");
    assert_eq!(list[0]["state"], "available");
    assert_eq!(list[0]["max_calls"], 2);
    assert_eq!(list.as_array().unwrap().len(), 1);
}
