//! The registry's scripts against a real Redis (`tests/services.sh` starts
//! one on 6379): each test on its own database number, flushed first.

use std::sync::Arc;
use std::time::Duration;

use hark_actors::Keys;
use hark_actors::records::{MemorySink, Record};

use super::*;
use crate::cluster::load::Lag;
use crate::lifecycle::{CallSlot, Lifecycle};
use crate::policies::{Policies, Routing, Source};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn flushed(db: u8) -> String {
    let url = format!("{REDIS}/{db}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {REDIS} (tests/services.sh starts it): {e}"));
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    url
}

struct TestNode {
    cluster: Arc<Cluster>,
    lifecycle: Arc<Lifecycle>,
    records: Arc<MemorySink>,
    slots: Vec<CallSlot>,
}

fn policies() -> Arc<Policies> {
    let (p, _) = Policies::load(
        Source::BuiltIn,
        Routing::default(),
        hark_actors::providers::ProviderEndpoints::default(),
        Keys::default(),
    )
    .unwrap();
    Arc::new(p)
}

fn node(url: &str, id: &str, capacity: usize, lag_ms: u64, settings: &ClusterSettings) -> TestNode {
    node_with(url, id, capacity, lag_ms, settings, Duration::from_secs(10))
}

fn node_with(
    url: &str,
    id: &str,
    capacity: usize,
    lag_ms: u64,
    settings: &ClusterSettings,
    start_timeout: Duration,
) -> TestNode {
    let lifecycle = Lifecycle::new(capacity);
    let records = Arc::new(MemorySink::default());
    let cluster = Cluster::new(
        url,
        settings,
        NodeParts {
            node: id.into(),
            url: format!("http://{id}.test"),
            capacity,
            start_timeout,
            lifecycle: Arc::clone(&lifecycle),
            policies: policies(),
            lag: Lag::fixed(Duration::from_millis(lag_ms)),
            records: records.clone(),
        },
    )
    .unwrap();
    TestNode {
        cluster,
        lifecycle,
        records,
        slots: Vec::new(),
    }
}

/// Nodes `a` and `b`, registered.
async fn two_nodes(url: &str, s: &ClusterSettings) -> (TestNode, TestNode) {
    let a = node(url, "a", 100, 0, s);
    let b = node(url, "b", 100, 0, s);
    a.cluster.heartbeat_once().await.unwrap();
    b.cluster.heartbeat_once().await.unwrap();
    (a, b)
}

fn settings() -> ClusterSettings {
    ClusterSettings {
        heartbeat_ms: 100,
        ttl_ms: 300,
        ..ClusterSettings::default()
    }
}

fn tag() -> String {
    let p = policies().default_live();
    policy_tag(&p.policy.name, &p.policy.version)
}

#[tokio::test]
async fn placement_follows_queue_depth_and_reservations_spread_a_burst() {
    let url = flushed(9).await;
    let s = settings();
    let mut a = node(&url, "a", 100, 0, &s);
    let b = node(&url, "b", 100, 0, &s);
    // Slowed: its workers run 4 ms late (depth +0.2).
    let c = node(&url, "c", 100, 4, &s);
    // `a` has 10 calls in progress (depth 0.1).
    for _ in 0..10 {
        a.slots.push(a.lifecycle.admit().unwrap());
    }
    for n in [&a, &b, &c] {
        n.cluster.heartbeat_once().await.unwrap();
    }
    let mut got = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..60 {
        match a.cluster.place(&format!("CA{i}"), &tag(), "").await {
            Placement::Node { id, url } => {
                assert_eq!(url, format!("http://{id}.test"));
                *got.entry(id).or_default() += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // Each reservation raises its node's depth by 1/100, so the burst
    // levels them: b first, then a and b, then all three.
    // b: 0 → x, a: 0.1 → x, c: 0.2 → x with 60 = (x-0)+(x-0.1)+(x-0.2) per 100.
    assert_eq!(got["b"], 30, "{got:?}");
    assert_eq!(got["a"], 20, "{got:?}");
    assert_eq!(got["c"], 10, "{got:?}");
}

#[tokio::test]
async fn full_draining_and_policy_less_nodes_get_nothing() {
    let url = flushed(10).await;
    let s = ClusterSettings {
        max_queue_depth: 0.05,
        ..settings()
    };
    let (a, b) = two_nodes(&url, &s).await;
    // Another version of the policy: nobody holds it.
    assert_eq!(
        a.cluster.place("CA0", ",default@nope,", "").await,
        Placement::Full
    );
    b.cluster.drain().await;
    // Up to 0.05 on `a`: 5 calls, then nothing (b drains).
    for i in 0..5 {
        assert!(matches!(
            a.cluster.place(&format!("CA{i}"), &tag(), "").await,
            Placement::Node { id, .. } if id == "a"
        ));
    }
    assert_eq!(a.cluster.place("CA9", &tag(), "").await, Placement::Full);
    // Excluding the only candidate.
    let c = node(&url, "c", 100, 0, &s);
    c.cluster.heartbeat_once().await.unwrap();
    assert_eq!(a.cluster.place("CA10", &tag(), "c").await, Placement::Full);
}

#[tokio::test]
async fn reservations_lapse_when_no_stream_comes_and_become_calls_when_one_does() {
    let url = flushed(11).await;
    let s = ClusterSettings {
        max_queue_depth: 0.02,
        ttl_ms: 5_000,
        ..settings()
    };
    let mut a = node_with(&url, "a", 100, 0, &s, Duration::from_millis(300));
    a.cluster.heartbeat_once().await.unwrap();
    assert!(matches!(
        a.cluster.place("CA1", &tag(), "").await,
        Placement::Node { .. }
    ));
    assert!(matches!(
        a.cluster.place("CA2", &tag(), "").await,
        Placement::Node { .. }
    ));
    assert_eq!(a.cluster.place("CA3", &tag(), "").await, Placement::Full);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Both lapsed.
    assert!(matches!(
        a.cluster.place("CA3", &tag(), "").await,
        Placement::Node { .. }
    ));
    // CA3's stream arrives: a call now, not a reservation; the entry says where.
    a.slots.push(a.lifecycle.admit().unwrap());
    a.cluster.call_started("CA3").await;
    assert_eq!(
        a.cluster.call_entry("CA3").await.unwrap(),
        Some(CallEntry {
            node: "a".into(),
            ended: false
        })
    );
    a.cluster.call_ended("CA3").await;
    assert_eq!(
        a.cluster.call_entry("CA3").await.unwrap(),
        Some(CallEntry {
            node: "a".into(),
            ended: true
        })
    );
    assert_eq!(a.cluster.call_entry("CA404").await.unwrap(), None);
}

#[tokio::test]
async fn a_lost_nodes_calls_end_node_lost_unless_moved_and_it_gets_no_more_calls() {
    let url = flushed(12).await;
    let s = settings();
    let (a, b) = two_nodes(&url, &s).await;
    b.cluster.call_started("CA1").await;
    b.cluster.call_started("CA2").await;
    // CA2 is taken over by `a` (its caller came back through the action URL).
    assert_eq!(b.cluster.next_stream("CA2").await.unwrap(), 4_001);
    a.cluster.call_started("CA2").await;
    // `b` stops renewing; `a` keeps going.
    let beat = a.cluster.spawn_heartbeat();
    tokio::time::sleep(Duration::from_millis(700)).await;
    beat.abort();
    assert!(matches!(
        a.cluster.place("CA3", &tag(), "").await,
        Placement::Node { id, .. } if id == "a"
    ));
    let ended: Vec<(String, String)> = std::mem::take(&mut *a.records.0.lock().unwrap())
        .into_iter()
        .filter_map(|r| match r {
            Record::CallEnded {
                call_sid,
                end_reason,
                ..
            } => Some((call_sid, end_reason)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [("CA1".to_owned(), "node_lost".to_owned())]);
    assert!(b.records.0.lock().unwrap().is_empty());
    assert_eq!(
        a.cluster.call_entry("CA2").await.unwrap(),
        Some(CallEntry {
            node: "a".into(),
            ended: false
        })
    );
}

#[tokio::test]
async fn limits_are_shared_between_nodes() {
    let url = flushed(13).await;
    let s = settings();
    let (a, b) = two_nodes(&url, &s).await;
    let la = limits::SharedCallerLimit::new(Arc::clone(&a.cluster), 3);
    let lb = limits::SharedCallerLimit::new(Arc::clone(&b.cluster), 3);
    use crate::cluster::{CallerLimiter, RateLimiter};
    assert!(la.admit("h1").await && lb.admit("h1").await && la.admit("h1").await);
    assert!(!lb.admit("h1").await, "the fourth attempt, on either node");
    assert!(la.admit("h2").await);
    let ra = limits::SharedRateLimit::new(Arc::clone(&a.cluster), 2);
    let rb = limits::SharedRateLimit::new(Arc::clone(&b.cluster), 2);
    let mut admitted = 0;
    for i in 0..10 {
        let l = if i % 2 == 0 { &ra } else { &rb };
        admitted += usize::from(l.admit("tok").await);
    }
    // A burst of 4 (twice the rate), and maybe one refilled meanwhile.
    assert!((4..=5).contains(&admitted), "{admitted}");
}

#[tokio::test]
async fn without_redis_a_node_places_here_and_limits_stay_local() {
    // Nothing listens there.
    let s = ClusterSettings {
        redis_timeout_ms: 100,
        ..settings()
    };
    let a = node("redis://127.0.0.1:1/0", "a", 100, 0, &s);
    assert!(a.cluster.heartbeat_once().await.is_err());
    assert!(!a.cluster.is_up());
    let started = std::time::Instant::now();
    assert_eq!(
        a.cluster.place("CA1", &tag(), "").await,
        Placement::Fallback
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    use crate::cluster::CallerLimiter;
    let limit = limits::SharedCallerLimit::new(Arc::clone(&a.cluster), 1);
    assert!(limit.admit("h").await);
    assert!(!limit.admit("h").await, "counted in-process meanwhile");
}
