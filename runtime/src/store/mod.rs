//! The call record store: PostgreSQL in production, SQLite as the embedded
//! default, behind one set of portable queries (`sqlx::Any`: `$n`
//! placeholders, `ON CONFLICT`, BIGINT/TEXT/bytes columns only). Each backend
//! has its own migrations folder, run at start-up.
//!
//! Every write is idempotent — a row's identity is its natural key (a call's
//! SID, a turn's call SID and number) — so replaying a spool never duplicates.

pub mod agents;
pub mod campaigns;
pub mod erasure;
pub mod leads;
pub mod outbound;
pub mod queries;
pub mod rows;
pub mod scheduling;
pub mod spool;
pub mod startup;
pub mod writer;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row as _};

pub use rows::Row;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unreachable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(String),
    #[error("migrations: {0}")]
    Migrate(String),
    #[error("database URL {0:?}: use postgres://… or sqlite://…")]
    Url(String),
    #[error("{0}")]
    Keys(String),
}

/// Whether a PostgreSQL SQLSTATE means "try again later" rather than "this
/// statement is wrong": the connection (08), resources (53), an operator or
/// failover (57: admin shutdown, crash recovery), system I/O (58), a
/// serialization failure or deadlock (40001, 40P01), a read-only server
/// (25006: a standby, or a primary just demoted by a failover), a lock not
/// available (55P03).
pub fn pg_transient(sqlstate: &str) -> bool {
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
        || ["40001", "40P01", "25006", "55P03"].contains(&sqlstate)
}

/// Whether a SQLite result code (extended codes included: SQLite reports
/// e.g. 517 for BUSY_SNAPSHOT) means "try again later": BUSY, LOCKED,
/// READONLY (a file system remounted), IOERR, FULL, CANTOPEN.
pub fn sqlite_transient(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6 | 8 | 10 | 13 | 14)
}

impl StoreError {
    pub fn from_sqlx(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            // The server answered: an outage-like condition passes (see
            // `pg_transient`, `sqlite_transient`); anything else is about
            // the statement.
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                let transient = if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    pg_transient(&code)
                } else {
                    code.parse::<i64>().is_ok_and(sqlite_transient)
                };
                if transient {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Query(e.to_string())
                }
            }
            E::Configuration(_)
            | E::InvalidArgument(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::ColumnNotFound(_)
            | E::ColumnDecode { .. }
            | E::Encode(_)
            | E::Decode(_)
            | E::TypeNotFound { .. }
            | E::RowNotFound => StoreError::Query(e.to_string()),
            // I/O, TLS, protocol (a socket cut mid-reply), pool timeouts.
            _ => StoreError::Unavailable(e.to_string()),
        }
    }

    /// Whether waiting (and spooling meanwhile) may help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

impl Store {
    /// Connects (lazily: a database that is down at start-up is spooled for,
    /// not fatal) with a pool of up to 8 connections (1 for SQLite).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, 8).await
    }

    /// [`Store::open`] with a pool of up to `connections` (1 for SQLite,
    /// whatever is asked). Hark opens one pool per job — the record writer,
    /// the webhooks' blocklist lookups, the admin API — so none can starve
    /// another.
    pub async fn open_with(url: &str, connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let url = match backend {
            Backend::Sqlite => sqlite_creating(url),
            Backend::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite {
                1
            } else {
                connections.max(1)
            })
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_lazy(&url)
            .map_err(StoreError::from_sqlx)?;
        Ok(Self { pool, backend })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        };
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from_sqlx(e),
            other => StoreError::Migrate(other.to_string()),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that writes. On SQLite it takes the write lock first
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
    /// writes is refused at once with `SQLITE_BUSY` — the busy timeout not
    /// consulted — when another connection (the record writer, the admin
    /// API's pool) is writing meanwhile; a lock asked for first is waited
    /// for.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::from_sqlx)
    }

    /// Writes rows in one transaction.
    pub async fn write(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for row in rows {
            row.query()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await.map_err(StoreError::from_sqlx)
    }

    pub async fn count(&self, table: Table) -> Result<i64, StoreError> {
        let row = sqlx::query(table.count_sql())
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.try_get::<i64, _>("n").map_err(StoreError::from_sqlx)
    }
}

/// What `hark store replay-rejected` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub written: usize,
    /// Still refused by the database: kept.
    pub refused: usize,
    /// Not tried (the database went away): kept.
    pub untried: usize,
}

impl Store {
    /// Writes the rows kept in `rejected/` (rows the database refused once,
    /// e.g. during a bug since fixed) one by one; what is still refused, or
    /// not tried because the database went away, stays there.
    pub async fn replay_rejected(&self, dir: &std::path::Path) -> Result<ReplayReport, String> {
        let mut spool = spool::Spool::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rows = spool
            .read()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut report = ReplayReport::default();
        let mut kept = Vec::new();
        let mut down = None;
        for row in rows {
            if down.is_some() {
                report.untried += 1;
                kept.push(row);
                continue;
            }
            match self.write(std::slice::from_ref(&row)).await {
                Ok(()) => report.written += 1,
                Err(e) if e.is_unavailable() => {
                    down = Some(e);
                    report.untried += 1;
                    kept.push(row);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "row still refused; kept");
                    report.refused += 1;
                    kept.push(row);
                }
            }
        }
        spool
            .replace(&kept)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        match down {
            Some(e) => Err(format!(
                "{e}: stopped after {} row(s); {} kept for the next run",
                report.written,
                kept.len()
            )),
            None => Ok(report),
        }
    }
}

/// Tables a caller may count (a closed set: never a name from input).
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Calls,
    Turns,
    Events,
    AuditLog,
}

impl Table {
    fn count_sql(self) -> &'static str {
        match self {
            Table::Calls => "SELECT COUNT(*) AS n FROM calls",
            Table::Turns => "SELECT COUNT(*) AS n FROM turns",
            Table::Events => "SELECT COUNT(*) AS n FROM call_events",
            Table::AuditLog => "SELECT COUNT(*) AS n FROM audit_log",
        }
    }
}

/// A SQLite URL that creates its file when missing (`mode=rwc`), as the
/// default URL does, unless it names a mode of its own.
fn sqlite_creating(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if query.split('&').any(|kv| kv.starts_with("mode=")) || sqlite_path(url).is_none() {
        return url.to_owned();
    }
    if query.is_empty() {
        format!("{base}?mode=rwc")
    } else {
        format!("{base}?{query}&mode=rwc")
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file_unless_they_say_otherwise() {
        assert_eq!(
            sqlite_creating("sqlite:///tmp/h.db"),
            "sqlite:///tmp/h.db?mode=rwc"
        );
        assert_eq!(
            sqlite_creating("sqlite://data/h.db?cache=shared"),
            "sqlite://data/h.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_creating("sqlite://h.db?mode=ro"),
            "sqlite://h.db?mode=ro"
        );
        assert_eq!(sqlite_creating("sqlite::memory:"), "sqlite::memory:");
    }
}
