//! The record writer: calls hand it records without waiting, and one task
//! writes them in batched transactions. While the database is unreachable —
//! or slow: every write has a deadline — batches go to the fsynced spool
//! instead, and everything new follows them there until the spool has been
//! replayed, in order.
//!
//! Memory is bounded end to end. Records wait in a queue (`QUEUE`), then in
//! an overflow (`OVERFLOW`); past that they are spilled straight to the
//! spool by a blocking task (`SPILL` may wait for it). Only past all three —
//! or after the writer has finished at shutdown — is a record dropped, and
//! then it is counted and logged. On shutdown the writer writes what it can
//! before its deadline and spools the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hark_actors::records::{Record, RecordSink};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::spool::Spool;
use super::{Row, Store, StoreError};
use crate::pii::Pii;

/// Rows per transaction.
pub const BATCH: usize = 256;
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long the first record of a batch waits for others: one transaction
/// (and one fsync) per 100 ms instead of one per record or two under load.
/// Records are in memory meanwhile, as they are while a write is in flight.
const LINGER: Duration = Duration::from_millis(100);
/// After `finish`'s deadline, time allowed to spool what is left.
const SPOOL_GRACE: Duration = Duration::from_secs(10);

pub const ROWS_WRITTEN: &str = "hark_store_rows_written_total";
pub const ROWS_SPOOLED: &str = "hark_store_rows_spooled_total";
pub const ROWS_REJECTED: &str = "hark_store_rows_rejected_total";
pub const SPOOL_ROWS: &str = "hark_store_spool_rows";
pub const QUEUE_OVERFLOW: &str = "hark_store_queue_overflow_total";
pub const RECORDS_DROPPED: &str = "hark_store_records_dropped_total";
pub const SPOOL_READ_ERRORS: &str = "hark_store_spool_read_errors_total";

/// Failed spool reads, for the test that they are backed off.
#[cfg(test)]
static READ_FAILURES: AtomicU64 = AtomicU64::new(0);
pub const STORE_UP: &str = "hark_store_up";
pub const WRITE_SECONDS: &str = "hark_store_write_seconds";

pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        ROWS_WRITTEN,
        "Record rows written to the database (spool replays included)."
    );
    describe_counter!(
        ROWS_SPOOLED,
        "Record rows written to the local spool (database unreachable or slow, or the writer's memory full)."
    );
    describe_counter!(
        ROWS_REJECTED,
        "Record rows the database refused (kept in spool/rejected/)."
    );
    describe_gauge!(SPOOL_ROWS, "Rows waiting in the local spool.");
    describe_counter!(
        QUEUE_OVERFLOW,
        "Records that found the writer's queue full (held in the overflow, or spilled to the spool)."
    );
    describe_counter!(
        RECORDS_DROPPED,
        "Records lost: past every bound, or handed over after the writer finished at shutdown."
    );
    describe_gauge!(STORE_UP, "1 while the database takes writes.");
    describe_histogram!(
        WRITE_SECONDS,
        Unit::Seconds,
        "One batched write transaction."
    );
    metrics::counter!(ROWS_WRITTEN).absolute(0);
    metrics::counter!(ROWS_SPOOLED).absolute(0);
    metrics::counter!(RECORDS_DROPPED).absolute(0);
}

/// How much the writer holds in memory, and how long a write may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records queued for the writer task.
    pub queue: usize,
    /// Records held in memory once the queue is full.
    pub overflow: usize,
    /// Records waiting to be spilled to the spool once the overflow is full.
    pub spill: usize,
    /// One database write (a batch, a migration); past it the database
    /// counts as down and the batch goes to the spool.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue: 65_536,
            overflow: 65_536,
            spill: 65_536,
            write_timeout: Duration::from_secs(5),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The database and spool as `/readyz` reports them.
#[derive(Debug, Default)]
pub struct StoreHealth {
    up: AtomicBool,
    spool_rows: AtomicU64,
}

impl StoreHealth {
    /// Whether the last write (or migration) reached the database.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn spool_rows(&self) -> u64 {
        self.spool_rows.load(Ordering::Acquire)
    }

    fn set_spool(&self, rows: u64) {
        self.spool_rows.store(rows, Ordering::Release);
        metrics::gauge!(SPOOL_ROWS).set(rows as f64);
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
    }
}

fn dropped(n: u64, why: &str) {
    metrics::counter!(RECORDS_DROPPED).increment(n);
    tracing::error!(records = n, why, "call records lost");
}

/// Past the overflow: records go straight to the spool, from a blocking
/// task, so a caller never waits on the disk.
struct Spill {
    pending: Mutex<Vec<Record>>,
    cap: usize,
    running: AtomicBool,
    spool: Arc<Mutex<Spool>>,
    pii: Arc<Pii>,
    runtime: tokio::runtime::Handle,
    health: Arc<StoreHealth>,
}

impl Spill {
    fn push(self: &Arc<Self>, record: Record) {
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= self.cap {
                drop(pending);
                return dropped(1, "the writer's memory and spill queue are full");
            }
            if pending.is_empty() {
                tracing::warn!("record overflow full: spilling records straight to the spool");
            }
            pending.push(record);
        }
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            self.runtime.spawn_blocking(move || me.drain());
        }
    }

    fn drain(&self) {
        loop {
            let batch = std::mem::take(&mut *lock(&self.pending));
            if batch.is_empty() {
                self.running.store(false, Ordering::Release);
                // A push may have come between the take and the store.
                if lock(&self.pending).is_empty() || self.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let n = batch.len();
            let rows: Vec<Row> = batch
                .into_iter()
                .map(|r| Row::from_record(r, &self.pii))
                .collect();
            let mut spool = lock(&self.spool);
            match spool.append(&rows) {
                Ok(()) => {
                    metrics::counter!(ROWS_SPOOLED).increment(n as u64);
                    self.health.set_spool(spool.len());
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the spool");
                    dropped(n as u64, "the spool cannot be written");
                }
            }
        }
    }
}

/// The sink calls record into.
pub struct RecordQueue {
    tx: mpsc::Sender<Record>,
    overflow: Mutex<VecDeque<Record>>,
    overflow_cap: usize,
    wake: Notify,
    spill: Arc<Spill>,
    /// Set once a record arrived after the writer finished (logged once).
    late: AtomicBool,
    pub health: Arc<StoreHealth>,
}

impl RecordQueue {
    /// Erases the personal data of `calls` — and of every call with the
    /// number hashed `number_hash`, which it adds to `calls` — from the
    /// spool and `rejected/`: each such row becomes [`Row::erased`] in its
    /// place. How many rows were changed.
    pub fn erase(
        &self,
        calls: &mut std::collections::BTreeSet<String>,
        number_hash: Option<&str>,
    ) -> std::io::Result<u64> {
        let pii = &self.spill.pii;
        let mut spool = lock(&self.spill.spool);
        let mut rejected = Spool::open(&rejected_dir(&spool))?;
        let mut changed = 0;
        for s in [&mut *spool, &mut rejected] {
            let rows = s.read()?;
            if let Some(hash) = number_hash {
                calls.extend(
                    rows.iter()
                        .filter(|r| r.has_number(hash))
                        .map(|r| r.call_sid().to_owned()),
                );
            }
            if !rows.iter().any(|r| calls.contains(r.call_sid())) {
                continue;
            }
            let rows: Vec<Row> = rows
                .into_iter()
                .map(|r| {
                    if calls.contains(r.call_sid()) {
                        changed += 1;
                        r.erased(pii).unwrap_or(Row::Erased)
                    } else {
                        r
                    }
                })
                .collect();
            s.replace(&rows)?;
        }
        Ok(changed)
    }

    /// Records held in the overflow now.
    pub fn overflow_len(&self) -> usize {
        lock(&self.overflow).len()
    }
}

impl RecordSink for RecordQueue {
    fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                metrics::counter!(QUEUE_OVERFLOW).increment(1);
                let mut o = lock(&self.overflow);
                if o.len() < self.overflow_cap {
                    if o.is_empty() {
                        tracing::warn!(
                            "record queue full: holding records in memory until the writer catches up"
                        );
                    }
                    o.push_back(record);
                    drop(o);
                    self.wake.notify_one();
                } else {
                    drop(o);
                    self.spill.push(record);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!(RECORDS_DROPPED).increment(1);
                if !self.late.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        "a call record arrived after the record writer finished; lost (counted in hark_store_records_dropped_total)"
                    );
                }
            }
        }
    }
}

pub struct Writer {
    pub queue: Arc<RecordQueue>,
    task: JoinHandle<()>,
    stop: watch::Sender<Option<Instant>>,
}

impl Writer {
    pub fn start(store: Store, spool: Spool, pii: Arc<Pii>) -> Self {
        Self::start_with(store, spool, pii, Limits::default())
    }

    pub fn start_with(store: Store, spool: Spool, pii: Arc<Pii>, limits: Limits) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let health = Arc::new(StoreHealth::default());
        health.set_spool(spool.len());
        let spool = Arc::new(Mutex::new(spool));
        let queue = Arc::new(RecordQueue {
            tx,
            overflow: Mutex::new(VecDeque::new()),
            overflow_cap: limits.overflow,
            wake: Notify::new(),
            spill: Arc::new(Spill {
                pending: Mutex::new(Vec::new()),
                cap: limits.spill,
                running: AtomicBool::new(false),
                spool: Arc::clone(&spool),
                pii: Arc::clone(&pii),
                runtime: tokio::runtime::Handle::current(),
                health: Arc::clone(&health),
            }),
            late: AtomicBool::new(false),
            health,
        });
        let (stop, stopping) = watch::channel(None);
        let task = tokio::spawn(
            Task {
                store,
                spool,
                pii,
                rx,
                queue: Arc::clone(&queue),
                migrated: false,
                retry: FIRST_RETRY,
                next_retry: Instant::now(),
                write_timeout: limits.write_timeout,
                deadline: None,
            }
            .run(stopping),
        );
        Self { queue, task, stop }
    }

    /// Writes what it can of everything queued within `limit`, spools the
    /// rest, then stops. Records handed over later are counted as dropped.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(Some(Instant::now() + limit));
        if tokio::time::timeout(limit + SPOOL_GRACE, self.task)
            .await
            .is_err()
        {
            tracing::error!("record writer could not even spool in time");
        }
    }
}

struct Task {
    store: Store,
    spool: Arc<Mutex<Spool>>,
    pii: Arc<Pii>,
    rx: mpsc::Receiver<Record>,
    queue: Arc<RecordQueue>,
    migrated: bool,
    retry: Duration,
    next_retry: Instant,
    write_timeout: Duration,
    /// Set by `finish`: past it, nothing is written, only spooled.
    deadline: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        // Whatever an earlier run spooled goes first.
        self.recover().await;
        loop {
            let mut records = Vec::with_capacity(BATCH);
            let spooled = self.spool_len() > 0;
            if self.deadline.is_none() {
                let retry_at = self.next_retry;
                tokio::select! {
                    n = self.rx.recv_many(&mut records, BATCH) => {
                        if n == 0 {
                            self.deadline = Some(Instant::now());
                        } else {
                            self.linger(&mut records, &mut stop).await;
                        }
                    }
                    _ = self.queue.wake.notified() => {}
                    Ok(()) = stop.changed() => {
                        self.deadline = *stop.borrow();
                        self.rx.close();
                    }
                    _ = tokio::time::sleep_until(retry_at), if spooled => {}
                }
            }
            {
                let mut o = lock(&self.queue.overflow);
                while records.len() < BATCH * 4 {
                    match o.pop_front() {
                        Some(r) => records.push(r),
                        None => break,
                    }
                }
            }
            while records.len() < BATCH * 4 {
                match self.rx.try_recv() {
                    Ok(r) => records.push(r),
                    Err(_) => break,
                }
            }
            let rows: Vec<Row> = records
                .into_iter()
                .map(|r| Row::from_record(r, &self.pii))
                .collect();
            if self.deadline.is_some() && rows.is_empty() {
                if self.spool_len() > 0 {
                    self.recover().await;
                }
                return;
            }
            self.store_rows(rows).await;
        }
    }

    /// Collects more records for `LINGER` or until a batch is full.
    async fn linger(
        &mut self,
        records: &mut Vec<Record>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) {
        let until = tokio::time::sleep(LINGER);
        tokio::pin!(until);
        while records.len() < BATCH {
            let room = BATCH - records.len();
            tokio::select! {
                n = self.rx.recv_many(records, room) => {
                    if n == 0 {
                        return;
                    }
                }
                () = &mut until => return,
                Ok(()) = stop.changed() => {
                    self.deadline = *stop.borrow();
                    self.rx.close();
                    return;
                }
            }
        }
    }

    fn spool_len(&self) -> u64 {
        lock(&self.spool).len()
    }

    /// How long the next database call may take: the write timeout, cut to
    /// what is left before `finish`'s deadline.
    fn budget(&self) -> Duration {
        match self.deadline {
            Some(d) => self
                .write_timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => self.write_timeout,
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let budget = self.budget();
        if budget.is_zero() {
            return Err(StoreError::Unavailable(format!(
                "shutting down: no time left to {what}"
            )));
        }
        tokio::time::timeout(budget, op).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "{what} took longer than {budget:?}"
            )))
        })
    }

    /// Migrates if not done yet, and replays the spool.
    async fn recover(&mut self) {
        if Instant::now() < self.next_retry {
            return;
        }
        if !self.migrated {
            let store = self.store.clone();
            match self
                .timed("migrate", async move { store.migrate().await })
                .await
            {
                Ok(()) => self.migrated = true,
                Err(e) => return self.down(e),
            }
        }
        if self.spool_len() > 0 {
            self.replay().await;
        } else {
            self.up();
        }
    }

    async fn store_rows(&mut self, rows: Vec<Row>) {
        if self.spool_len() > 0 || !self.migrated {
            // Keep the order: new rows follow the spooled ones.
            if !rows.is_empty() {
                self.spool_rows(rows).await;
            }
            self.recover().await;
            return;
        }
        if rows.is_empty() {
            return;
        }
        for (i, chunk) in rows.chunks(BATCH).enumerate() {
            match self.write(chunk).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    self.down(e);
                    self.spool_rows(rows[i * BATCH..].to_vec()).await;
                    return;
                }
                Err(e) => self.reject_each(chunk, e).await,
            }
        }
    }

    async fn write(&self, rows: &[Row]) -> Result<(), StoreError> {
        let t = Instant::now();
        self.timed("write", self.store.write(rows)).await?;
        metrics::histogram!(WRITE_SECONDS).record(t.elapsed().as_secs_f64());
        metrics::counter!(ROWS_WRITTEN).increment(rows.len() as u64);
        Ok(())
    }

    /// A batch the database refused: write row by row, keep the refused ones aside.
    async fn reject_each(&mut self, rows: &[Row], first: StoreError) {
        tracing::error!(error = %first, "database refused a batch; writing its rows one by one");
        for row in rows {
            match self.write(std::slice::from_ref(row)).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    self.down(e);
                    self.spool_rows(vec![row.clone()]).await;
                }
                Err(e) => {
                    metrics::counter!(ROWS_REJECTED).increment(1);
                    tracing::error!(error = %e, "row refused by the database; kept in spool/rejected/ (hark store replay-rejected)");
                    let dir = rejected_dir(&lock(&self.spool));
                    let row = row.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        Spool::open(&dir).and_then(|mut s| s.append(&[row]))
                    })
                    .await;
                }
            }
        }
    }

    async fn spool_rows(&mut self, rows: Vec<Row>) {
        let n = rows.len();
        let spool = Arc::clone(&self.spool);
        let result = tokio::task::spawn_blocking(move || {
            let mut s = lock(&spool);
            s.append(&rows).map(|()| s.len())
        })
        .await;
        match result {
            Ok(Ok(len)) => {
                metrics::counter!(ROWS_SPOOLED).increment(n as u64);
                self.queue.health.set_spool(len);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write the spool");
                dropped(n as u64, "the spool cannot be written");
            }
            Err(e) => {
                tracing::error!(error = %e, "spool task failed");
                dropped(n as u64, "the spool task failed");
            }
        }
    }

    async fn replay(&mut self) {
        let spool = Arc::clone(&self.spool);
        let rows = match tokio::task::spawn_blocking(move || lock(&spool).read()).await {
            Ok(Ok(rows)) => rows,
            // Back off like an outage, rather than try again at once.
            Ok(Err(e)) => {
                metrics::counter!(SPOOL_READ_ERRORS).increment(1);
                #[cfg(test)]
                READ_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot read the spool; will try again");
                return self.down(StoreError::Unavailable(format!("spool unreadable: {e}")));
            }
            Err(e) => {
                return self.down(StoreError::Unavailable(format!("spool task failed: {e}")));
            }
        };
        let t = Instant::now();
        for chunk in rows.chunks(BATCH) {
            match self.write(chunk).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => return self.down(e),
                Err(e) => self.reject_each(chunk, e).await,
            }
        }
        let spool = Arc::clone(&self.spool);
        let replayed = rows.len();
        let left = tokio::task::spawn_blocking(move || {
            let mut s = lock(&spool);
            s.remove_first(replayed).map(|()| s.len())
        })
        .await;
        match left {
            Ok(Ok(left)) => self.queue.health.set_spool(left),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot empty the replayed spool (its rows will be replayed again: harmless, writes are idempotent)")
            }
            Err(e) => tracing::error!(error = %e, "spool task failed"),
        }
        tracing::info!(
            rows = rows.len(),
            ms = t.elapsed().as_millis() as u64,
            "spool replayed into the database"
        );
        self.up();
    }

    fn down(&mut self, e: StoreError) {
        if self.retry == FIRST_RETRY {
            tracing::warn!(error = %e, "database unreachable: spooling records to disk until it returns");
        }
        self.queue.health.set_up(false);
        self.next_retry = Instant::now() + self.retry;
        self.retry = (self.retry * 2).min(MAX_RETRY);
    }

    fn up(&mut self) {
        if self.retry != FIRST_RETRY {
            tracing::info!("database reachable again");
        }
        self.queue.health.set_up(true);
        self.retry = FIRST_RETRY;
        self.next_retry = Instant::now();
    }
}

/// Where rows the database refused are kept: `spool/rejected/`.
pub fn rejected_dir(spool: &Spool) -> std::path::PathBuf {
    spool.path().with_file_name("rejected")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::Pii;
    use base64::Engine;

    fn pii() -> Arc<Pii> {
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        Arc::new(Pii::from_spec(&format!("k1:{k}"), &k).unwrap())
    }

    fn event(seq: u32) -> Record {
        Record::Event {
            call_sid: "CA1".into(),
            seq,
            kind: "barge_in".into(),
            detail: String::new(),
            private: false,
            at_ms: 1,
        }
    }

    /// A PostgreSQL that accepts connections and never answers: every
    /// write would hang (as on a network that drops packets).
    async fn black_hole() -> (String, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("postgres://hark@{}/hark", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        (url, task)
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hark-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Memory stays bounded while the database hangs, every record reaches
    /// the spool, and `finish` returns on time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_database_spills_past_the_bounds_and_finish_spools_the_rest() {
        let (url, _db) = black_hole().await;
        let dir = temp("hung");
        let store = Store::open(&url).await.unwrap();
        let spool = Spool::open(&dir).unwrap();
        let limits = Limits {
            queue: 8,
            overflow: 8,
            spill: 100_000,
            write_timeout: Duration::from_millis(500),
        };
        let writer = Writer::start_with(store, spool, pii(), limits);
        for seq in 0..2_000 {
            writer.queue.send(event(seq));
            assert!(writer.queue.overflow_len() <= 8);
        }
        let began = Instant::now();
        writer.finish(Duration::from_secs(2)).await;
        assert!(began.elapsed() < Duration::from_secs(2) + SPOOL_GRACE);
        let mut spool = Spool::open(&dir).unwrap();
        let mut seqs: Vec<i64> = spool
            .read()
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Row::Event { seq, .. } => Some(seq),
                _ => None,
            })
            .collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..2_000).collect::<Vec<i64>>(),
            "every record is in the spool, once"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Erasure reaches rows not yet in the database: the person's calls are
    /// found by their number's hash in the spool, and each of their rows
    /// (in the spool and in `rejected/`) is erased in its place; other
    /// calls' rows are untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn erasure_reaches_the_spool_and_rejected_rows_in_place() {
        let (url, _db) = black_hole().await;
        let dir = temp("erase");
        let pii = pii();
        let started = |call: &str, from: &str| Record::CallStarted {
            call_sid: call.into(),
            stream_sid: "MZ1".into(),
            carrier: "twilio".into(),
            direction: "inbound".into(),
            from: from.into(),
            to: "+14155550199".into(),
            policy: "p".into(),
            policy_version: "1".into(),
            node: "n".into(),
            started_at_ms: 1,
        };
        let turn = |call: &str| Record::Turn {
            call_sid: call.into(),
            seq: 0,
            speaker: "caller".into(),
            text: "my card is 4111".into(),
            heard: None,
            interrupted: false,
            started_at_ms: 1,
            ended_at_ms: 2,
        };
        let rows: Vec<Row> = [
            started("CA1", "+14155550142"),
            turn("CA1"),
            started("CA2", "+14155550177"),
            turn("CA2"),
        ]
        .into_iter()
        .map(|r| Row::from_record(r, &pii))
        .collect();
        let mut spool = Spool::open(&dir).unwrap();
        spool.append(&rows).unwrap();
        let mut rejected = Spool::open(&rejected_dir(&spool)).unwrap();
        rejected
            .append(&[Row::from_record(turn("CA1"), &pii)])
            .unwrap();
        drop((spool, rejected));
        let store = Store::open(&url).await.unwrap();
        let spool = Spool::open(&dir).unwrap();
        let limits = Limits {
            write_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let writer = Writer::start_with(store, spool, Arc::clone(&pii), limits);
        let mut calls = std::collections::BTreeSet::new();
        let changed = writer
            .queue
            .erase(&mut calls, Some(&pii.hash_number("+14155550142")))
            .unwrap();
        assert_eq!(calls.into_iter().collect::<Vec<_>>(), ["CA1"]);
        assert_eq!(changed, 3);
        writer.finish(Duration::from_millis(500)).await;
        let after = Spool::open(&dir).unwrap().read().unwrap();
        assert_eq!(after.len(), 4, "rows keep their places");
        assert!(matches!(&after[0], Row::Call { from_hash, .. } if from_hash.is_empty()));
        assert_eq!(after[1], Row::Erased);
        assert!(matches!(&after[2], Row::Call { from_hash, .. } if !from_hash.is_empty()));
        assert!(matches!(&after[3], Row::Turn { call_sid, .. } if call_sid == "CA2"));
        let spool = Spool::open(&dir).unwrap();
        let rejected = Spool::open(&rejected_dir(&spool)).unwrap().read().unwrap();
        assert_eq!(rejected, vec![Row::Erased]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A spool that cannot be read (here: its file replaced by a directory)
    /// is tried again with backoff (250 ms doubling), not in a loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_spool_is_retried_with_backoff_not_in_a_loop() {
        let dir = temp("unreadable");
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/hark.db?mode=rwc", dir.display());
        let store = Store::open(&url).await.unwrap();
        let mut spool = Spool::open(&dir.join("spool")).unwrap();
        spool.append(&[Row::from_record(event(1), &pii())]).unwrap();
        let path = spool.path().to_owned();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let before = READ_FAILURES.load(Ordering::Relaxed);
        let writer = Writer::start_with(store, spool, pii(), Limits::default());
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let failures = READ_FAILURES.load(Ordering::Relaxed) - before;
        // 0, 250, 750 ms (+ the 100 ms linger of nothing): a handful, not thousands.
        assert!(
            (1..=5).contains(&failures),
            "{failures} reads failed in 1.5 s"
        );
        writer.finish(Duration::from_millis(200)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_after_finish_is_counted_as_dropped() {
        let (url, _db) = black_hole().await;
        let dir = temp("late");
        let writer = Writer::start_with(
            Store::open(&url).await.unwrap(),
            Spool::open(&dir).unwrap(),
            pii(),
            Limits {
                write_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
        );
        let queue = Arc::clone(&writer.queue);
        writer.finish(Duration::from_millis(500)).await;
        queue.send(event(1));
        assert!(queue.late.load(Ordering::Acquire));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
