//! How fast the record writer stores, and how fast a spool replays.
//!
//! `cargo run --release -p hark-bench --bin store-throughput -- [DATABASE_URL] [ROWS]`
//! (default: SQLite in a temp dir, 100000 rows). Each row is a turn of a
//! realistic length, encrypted as in production.
//!
//! 1. Throughput: ROWS turn records handed to the writer as fast as calls
//!    could; time until all are in the database.
//! 2. Replay: ROWS rows written to a spool file first (as during an outage),
//!    then a new writer started; time until the spool is in the database.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement tool: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_actors::records::{Record, RecordSink};
use hark_runtime::pii::Pii;
use hark_runtime::store::spool::Spool;
use hark_runtime::store::writer::Writer;
use hark_runtime::store::{Row, Store, Table};

fn turn(call: usize, seq: u32) -> Record {
    Record::Turn {
        call_sid: format!("CA{call:032x}"),
        seq,
        speaker: if seq.is_multiple_of(2) { "bot" } else { "caller" }.into(),
        text: "I heard you say: I would like to check on my order from last week. What else can I do for you?".into(),
        heard: None,
        interrupted: false,
        started_at_ms: 1,
        ended_at_ms: 2,
    }
}

async fn wait_rows(store: &Store, want: i64) -> Duration {
    let t = Instant::now();
    loop {
        if store.count(Table::Turns).await.unwrap_or(0) >= want {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fresh(url: &str, dir: &std::path::Path, name: &str) -> (Store, Spool) {
    let url = if url.is_empty() {
        format!("sqlite://{}/{name}.db?mode=rwc", dir.display())
    } else {
        url.to_owned()
    };
    let store = Store::open(&url).await.expect("database");
    store.migrate().await.expect("migrations");
    sqlx::query("DELETE FROM turns")
        .execute(store.pool())
        .await
        .expect("clean");
    let spool = Spool::open(&dir.join(format!("spool-{name}"))).expect("spool");
    (store, spool)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_default();
    let rows: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("hark-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (pii, _) = Pii::from_file_or_create(&dir.join("pii.keys")).expect("keys");
    let pii = Arc::new(pii);
    let backend = if url.is_empty() {
        "sqlite (temp file)"
    } else {
        url.as_str()
    };

    let (store, spool) = fresh(&url, &dir, "throughput").await;
    let writer = Writer::start(store.clone(), spool, Arc::clone(&pii));
    let t = Instant::now();
    for i in 0..rows {
        writer.queue.send(turn(i / 20, (i % 20) as u32));
    }
    let handed = t.elapsed();
    wait_rows(&store, rows as i64).await;
    let total = t.elapsed();
    writer.finish(Duration::from_secs(10)).await;
    println!(
        "{backend}: {rows} turn records handed over in {:.1} ms ({:.2} µs each); stored in {:.2} s = {:.0} rows/s",
        handed.as_secs_f64() * 1e3,
        handed.as_secs_f64() * 1e6 / rows as f64,
        total.as_secs_f64(),
        rows as f64 / total.as_secs_f64()
    );

    let (store, mut spool) = fresh(&url, &dir, "replay").await;
    let spooled: Vec<Row> = (0..rows)
        .map(|i| Row::from_record(turn(i / 20, (i % 20) as u32), &pii))
        .collect();
    let t = Instant::now();
    for chunk in spooled.chunks(256) {
        spool.append(chunk).expect("spool");
    }
    let spool_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let writer = Writer::start(store.clone(), spool, Arc::clone(&pii));
    wait_rows(&store, rows as i64).await;
    let replay = t.elapsed();
    writer.finish(Duration::from_secs(10)).await;
    println!(
        "{backend}: spooling {rows} rows (fsync per 256) took {spool_ms:.0} ms; replaying them took {:.2} s = {:.0} rows/s",
        replay.as_secs_f64(),
        rows as f64 / replay.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
