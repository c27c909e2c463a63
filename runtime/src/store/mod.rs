//! The call record store: PostgreSQL in production, SQLite as the embedded
//! default, behind one set of portable queries (`sqlx::Any`: `$n`
//! placeholders, `ON CONFLICT`, BIGINT/TEXT/bytes columns only). Each backend
//! has its own migrations folder, run at start-up.
//!
//! Every write is idempotent — a row's identity is its natural key (a call's
//! SID, a turn's call SID and number) — so replaying a spool never duplicates.

pub mod queries;
pub mod rows;
pub mod spool;
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
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            // The server answered: a connection-level or resource problem
            // (SQLSTATE classes 08, 53, 57; SQLite busy/locked/full) passes;
            // anything else is about the statement.
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                let transient = code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || ["5", "6", "13"].contains(&code.as_ref());
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
    /// not fatal) and runs the backend's migrations when it can.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
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
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
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

    /// Writes rows in one transaction.
    pub async fn write(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
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
