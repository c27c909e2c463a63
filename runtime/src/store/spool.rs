//! The append-only local spool: rows that could not reach the database, one
//! JSON line each, fsynced before the writer moves on. Replayed in order when
//! the database returns (and at start-up, after a restart). Blocking file
//! I/O: the writer calls it through `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::Row;

pub struct Spool {
    path: PathBuf,
    rows: u64,
}

impl Spool {
    /// Opens (creating the directory) and counts what an earlier run left.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("spool.jsonl");
        let rows = match File::open(&path) {
            Ok(f) => BufReader::new(f).lines().count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self { path, rows })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends and fsyncs: once this returns, the rows survive a crash.
    pub fn append(&mut self, rows: &[Row]) -> std::io::Result<()> {
        let mut text = String::new();
        for row in rows {
            text.push_str(&serde_json::to_string(row).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Every row, in order. A torn last line (a crash mid-append, before its
    /// fsync returned, so never acknowledged) is skipped.
    pub fn read(&self) -> std::io::Result<Vec<Row>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line?;
            match serde_json::from_str(&line) {
                Ok(row) => out.push(row),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable spool line"),
            }
        }
        Ok(out)
    }

    /// Empties the spool after a complete replay.
    pub fn clear(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(&self.path)?;
        f.sync_all()?;
        self.rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> Row {
        Row::Event {
            call_sid: "CA1".into(),
            seq,
            kind: "dtmf".into(),
            detail: "1".into(),
            at: seq,
        }
    }

    #[test]
    fn appends_survive_reopen_in_order_and_a_torn_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("hark-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Spool::open(&dir).unwrap();
        assert!(s.is_empty());
        s.append(&[event(0), event(1)]).unwrap();
        s.append(&[event(2)]).unwrap();
        // A crash mid-append leaves half a line.
        OpenOptions::new()
            .append(true)
            .open(s.path())
            .unwrap()
            .write_all(b"{\"t\":\"event\",\"call_")
            .unwrap();
        let s = Spool::open(&dir).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.read().unwrap(), vec![event(0), event(1), event(2)]);
        let mut s = s;
        s.clear().unwrap();
        assert!(Spool::open(&dir).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
