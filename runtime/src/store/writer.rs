//! The record writer: calls hand it records without waiting (a bounded queue;
//! past its bound, an in-memory overflow that is counted and logged), and
//! one task writes them in batched transactions. While the database is
//! unreachable, batches go to the fsynced spool instead, and everything new
//! follows them there until the spool has been replayed, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hark_actors::records::{Record, RecordSink};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::spool::Spool;
use super::{Row, Store, StoreError};
use crate::pii::Pii;

/// Rows per transaction.
pub const BATCH: usize = 256;
/// Records queued before the overflow takes them.
pub const QUEUE: usize = 65_536;
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

pub const ROWS_WRITTEN: &str = "hark_store_rows_written_total";
pub const ROWS_SPOOLED: &str = "hark_store_rows_spooled_total";
pub const ROWS_REJECTED: &str = "hark_store_rows_rejected_total";
pub const SPOOL_ROWS: &str = "hark_store_spool_rows";
pub const QUEUE_OVERFLOW: &str = "hark_store_queue_overflow_total";
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
        "Record rows written to the local spool while the database was unreachable."
    );
    describe_counter!(
        ROWS_REJECTED,
        "Record rows the database refused (kept in rejected.jsonl)."
    );
    describe_gauge!(SPOOL_ROWS, "Rows waiting in the local spool.");
    describe_counter!(
        QUEUE_OVERFLOW,
        "Records that found the writer's queue full and waited in memory."
    );
    describe_gauge!(STORE_UP, "1 while the database takes writes.");
    describe_histogram!(
        WRITE_SECONDS,
        Unit::Seconds,
        "One batched write transaction."
    );
    metrics::counter!(ROWS_WRITTEN).absolute(0);
    metrics::counter!(ROWS_SPOOLED).absolute(0);
}

/// The sink calls record into.
pub struct RecordQueue {
    tx: mpsc::Sender<Record>,
    overflow: Mutex<VecDeque<Record>>,
    wake: Notify,
}

impl RecordSink for RecordQueue {
    fn send(&self, record: Record) {
        if let Err(mpsc::error::TrySendError::Full(record)) = self.tx.try_send(record) {
            metrics::counter!(QUEUE_OVERFLOW).increment(1);
            let mut o = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
            if o.is_empty() {
                tracing::warn!(
                    "record queue full: holding records in memory until the writer catches up"
                );
            }
            o.push_back(record);
            self.wake.notify_one();
        }
    }
}

pub struct Writer {
    pub queue: Arc<RecordQueue>,
    task: JoinHandle<()>,
    stop: Arc<Notify>,
}

impl Writer {
    pub fn start(store: Store, spool: Spool, pii: Arc<Pii>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queue = Arc::new(RecordQueue {
            tx,
            overflow: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        });
        let stop = Arc::new(Notify::new());
        metrics::gauge!(SPOOL_ROWS).set(spool.len() as f64);
        let task = tokio::spawn(
            Task {
                store,
                spool: Arc::new(Mutex::new(spool)),
                pii,
                rx,
                queue: Arc::clone(&queue),
                migrated: false,
                retry: FIRST_RETRY,
                next_retry: Instant::now(),
            }
            .run(Arc::clone(&stop)),
        );
        Self { queue, task, stop }
    }

    /// Writes (or spools) everything queued, then stops.
    pub async fn finish(self, limit: Duration) {
        self.stop.notify_one();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("record writer did not finish in time");
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
}

impl Task {
    async fn run(mut self, stop: Arc<Notify>) {
        // Whatever an earlier run spooled goes first.
        self.recover().await;
        let mut stopping = false;
        loop {
            let mut records = Vec::with_capacity(BATCH);
            let spooled = self.spool_len() > 0;
            if !stopping {
                let retry_at = self.next_retry;
                tokio::select! {
                    n = self.rx.recv_many(&mut records, BATCH) => {
                        if n == 0 {
                            stopping = true;
                        }
                    }
                    _ = self.queue.wake.notified() => {}
                    _ = stop.notified() => {
                        stopping = true;
                        self.rx.close();
                    }
                    _ = tokio::time::sleep_until(retry_at), if spooled => {}
                }
            }
            {
                let mut o = self
                    .queue
                    .overflow
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
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
            if stopping && rows.is_empty() {
                if self.spool_len() > 0 {
                    self.recover().await;
                }
                return;
            }
            self.store_rows(rows).await;
        }
    }

    fn spool_len(&self) -> u64 {
        self.spool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Migrates if not done yet, and replays the spool.
    async fn recover(&mut self) {
        if Instant::now() < self.next_retry {
            return;
        }
        if !self.migrated {
            match self.store.migrate().await {
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
        self.store.write(rows).await?;
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
                    tracing::error!(error = %e, "row refused by the database; kept in rejected.jsonl");
                    let spool = Arc::clone(&self.spool);
                    let row = row.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let dir = spool
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .path()
                            .with_file_name("rejected");
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
            let mut s = spool.lock().unwrap_or_else(PoisonError::into_inner);
            s.append(&rows).map(|()| s.len())
        })
        .await;
        match result {
            Ok(Ok(len)) => {
                metrics::counter!(ROWS_SPOOLED).increment(n as u64);
                metrics::gauge!(SPOOL_ROWS).set(len as f64);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, rows = n, "cannot write the spool; these records are lost")
            }
            Err(e) => tracing::error!(error = %e, rows = n, "spool task failed"),
        }
    }

    async fn replay(&mut self) {
        let spool = Arc::clone(&self.spool);
        let rows = match tokio::task::spawn_blocking(move || {
            spool.lock().unwrap_or_else(PoisonError::into_inner).read()
        })
        .await
        {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return tracing::error!(error = %e, "cannot read the spool"),
            Err(e) => return tracing::error!(error = %e, "spool task failed"),
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
        let _ = tokio::task::spawn_blocking(move || {
            spool.lock().unwrap_or_else(PoisonError::into_inner).clear()
        })
        .await;
        metrics::gauge!(SPOOL_ROWS).set(0.0);
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
        metrics::gauge!(STORE_UP).set(0.0);
        self.next_retry = Instant::now() + self.retry;
        self.retry = (self.retry * 2).min(MAX_RETRY);
    }

    fn up(&mut self) {
        if self.retry != FIRST_RETRY {
            tracing::info!("database reachable again");
        }
        metrics::gauge!(STORE_UP).set(1.0);
        self.retry = FIRST_RETRY;
        self.next_retry = Instant::now();
    }
}
