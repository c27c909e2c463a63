//! The database at start-up: migrations, and the PII keys checked against
//! the rows already there.

use std::time::Duration;

use crate::config::Config;

/// Longest start-up waits for the database before it counts as down.
const MIGRATE_AT_START: Duration = Duration::from_secs(10);

/// Runs the migrations before the node takes calls. A migration that fails
/// (a bad or newer schema, a checksum mismatch) stops the node: records
/// would otherwise spool forever while it looks ready. A PostgreSQL that is
/// only unreachable does not: calls go on, records spool until it answers.
/// SQLite is a local file: any failure is a mistake to report now. The
/// error is the message to stop with.
pub async fn migrate_at_start(store: &crate::store::Store, config: &Config) -> Result<(), String> {
    let result = tokio::time::timeout(MIGRATE_AT_START, store.migrate()).await;
    let sqlite = store.backend == crate::store::Backend::Sqlite;
    let url = crate::telemetry::redact_url(&config.database_url);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if sqlite => Err(format!(
            "cannot open the SQLite database {url}: {e}; check that its folder is writable, or set HARK_DATABASE_URL"
        )),
        Ok(Err(e)) if e.is_unavailable() => {
            tracing::warn!(error = %e, "the database is unreachable at start-up: serving anyway, records spool to disk until it answers (see /readyz)");
            Ok(())
        }
        Ok(Err(e)) => Err(format!(
            "the database's migrations failed ({url}): {e}; hark will not start on a schema it cannot use"
        )),
        Err(_) if sqlite => Err(format!(
            "the SQLite database {url} did not answer in {MIGRATE_AT_START:?}"
        )),
        Err(_) => {
            tracing::warn!(
                "the database did not answer at start-up: serving anyway, records spool to disk until it answers (see /readyz)"
            );
            Ok(())
        }
    }
}

/// A node whose PII keys differ from the ones the database's rows are under
/// would write rows no other node can read, and hash numbers so that
/// blocks made elsewhere are not enforced: it does not start.
pub async fn check_pii_keys(
    store: &crate::store::Store,
    pii: &crate::pii::Pii,
) -> Result<(), super::StoreError> {
    match tokio::time::timeout(MIGRATE_AT_START, store.check_pii_keys(pii.fingerprints())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if !e.is_unavailable() => Err(e),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot check the PII keys against the database now (it is unreachable)");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                "cannot check the PII keys against the database now (it did not answer)"
            );
            Ok(())
        }
    }
}
