//! The append-only local spool: rows that could not reach the database, one
//! JSON line each, fsynced before the writer moves on. Replayed in order when
//! the database returns (and at start-up, after a restart). Blocking file
//! I/O: the writer calls it through `spawn_blocking`.
//!
//! A crash can tear only the last line (an append whose fsync never
//! returned, so never acknowledged): opening cuts the file back to its last
//! complete line, so the next append starts clean. A complete line that does
//! not parse (a bug, a disk fault, a hand edit) is never dropped: it is moved
//! to `unreadable.jsonl` beside the spool, and counted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Row;

/// `hark_store_rows_unreadable_total`: spool lines that did not parse, set aside.
pub const ROWS_UNREADABLE: &str = "hark_store_rows_unreadable_total";

pub struct Spool {
    path: PathBuf,
    rows: u64,
}

/// Makes a new directory entry durable: fsync the directory itself.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl Spool {
    /// Opens (creating the directory and file, durably), repairs a torn last
    /// line, sets unreadable lines aside, and counts what is left.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("spool.jsonl");
        let mut spool = Self { path, rows: 0 };
        if !spool.path.exists() {
            File::create(&spool.path)?.sync_all()?;
            sync_dir(dir)?;
        }
        spool.repair_tail()?;
        let (rows, aside) = spool.scan()?;
        if aside > 0 {
            spool.rewrite(&rows)?;
        }
        spool.rows = rows.len() as u64;
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where unreadable lines are kept.
    pub fn unreadable_path(&self) -> PathBuf {
        self.path.with_file_name("unreadable.jsonl")
    }

    pub fn len(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Cuts the file back to its last complete line.
    fn repair_tail(&self) -> std::io::Result<()> {
        let mut f = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(());
        }
        // Look back from the end for the last newline, a block at a time.
        let mut end = len;
        let mut buf = vec![0u8; 8192];
        let keep = loop {
            let start = end.saturating_sub(buf.len() as u64);
            let n = (end - start) as usize;
            f.seek(SeekFrom::Start(start))?;
            f.read_exact(&mut buf[..n])?;
            if end == len && buf[n - 1] == b'\n' {
                return Ok(()); // not torn
            }
            if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
                break start + i as u64 + 1;
            }
            if start == 0 {
                break 0;
            }
            end = start;
        };
        tracing::warn!(
            file = %self.path.display(),
            bytes = len - keep,
            "spool ends in a torn line (a crash mid-append, never acknowledged); cut back to the last complete line"
        );
        f.set_len(keep)?;
        f.sync_all()
    }

    /// Every row in order, and how many lines were set aside as unreadable
    /// (appended, fsynced, to `unreadable.jsonl` first).
    fn scan(&self) -> std::io::Result<(Vec<Row>, usize)> {
        let f = File::open(&self.path)?;
        let mut rows = Vec::new();
        let mut bad = String::new();
        let mut aside = 0;
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    tracing::error!(error = %e, file = %self.unreadable_path().display(), "unreadable spool line set aside");
                    bad.push_str(&String::from_utf8_lossy(&line));
                    bad.push('\n');
                    aside += 1;
                }
            }
        }
        if aside > 0 {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.unreadable_path())?;
            f.write_all(bad.as_bytes())?;
            f.sync_data()?;
            metrics::counter!(ROWS_UNREADABLE).increment(aside as u64);
        }
        Ok((rows, aside))
    }

    /// Replaces the file with `rows`, atomically and durably.
    fn rewrite(&mut self, rows: &[Row]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(encode(rows)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.rows = rows.len() as u64;
        Ok(())
    }

    /// Appends and fsyncs: once this returns, the rows survive a crash.
    pub fn append(&mut self, rows: &[Row]) -> std::io::Result<()> {
        let text = encode(rows)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Every row, in order. A line that does not parse is set aside (never
    /// lost with the replayed rows).
    pub fn read(&mut self) -> std::io::Result<Vec<Row>> {
        let (rows, aside) = self.scan()?;
        if aside > 0 {
            self.rewrite(&rows)?;
        }
        Ok(rows)
    }

    /// Removes the first `n` rows (the ones just replayed); rows appended
    /// since (the writer's memory spilling meanwhile) stay.
    pub fn remove_first(&mut self, n: usize) -> std::io::Result<()> {
        if n as u64 >= self.rows {
            return self.clear();
        }
        let rows = self.scan()?.0;
        self.rewrite(rows.get(n..).unwrap_or_default())
    }

    /// Replaces the spool's rows with `rows` (e.g. what is left of
    /// `rejected/` after a replay).
    pub fn replace(&mut self, rows: &[Row]) -> std::io::Result<()> {
        self.rewrite(rows)
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

fn encode(rows: &[Row]) -> std::io::Result<String> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(row).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> Row {
        Row::Event {
            call_sid: "CA1".into(),
            seq,
            kind: "dtmf".into(),
            detail: "pressed".into(),
            detail_enc: None,
            at: seq,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hark-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn tear(s: &Spool, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(s.path())
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn appends_survive_reopen_in_order() {
        let d = dir("order");
        let mut s = Spool::open(&d).unwrap();
        assert!(s.is_empty() && s.path().exists());
        s.append(&[event(0), event(1)]).unwrap();
        s.append(&[event(2)]).unwrap();
        let mut s = Spool::open(&d).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.read().unwrap(), vec![event(0), event(1), event(2)]);
        s.clear().unwrap();
        assert!(Spool::open(&d).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Before: the next append joined the torn line, and both were skipped
    /// (and deleted) at replay. Now the tail is cut on open.
    #[test]
    fn a_row_appended_after_a_torn_line_is_not_lost() {
        let d = dir("torn");
        let mut s = Spool::open(&d).unwrap();
        s.append(&[event(0)]).unwrap();
        tear(&s, b"{\"t\":\"event\",\"call_");
        let mut s = Spool::open(&d).unwrap();
        assert_eq!(s.len(), 1);
        s.append(&[event(1)]).unwrap();
        assert_eq!(
            Spool::open(&d).unwrap().read().unwrap(),
            vec![event(0), event(1)]
        );
        // A file that is one torn line only.
        std::fs::write(s.path(), b"{\"t\":").unwrap();
        assert!(Spool::open(&d).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn removing_the_replayed_rows_keeps_rows_appended_since() {
        let d = dir("front");
        let mut s = Spool::open(&d).unwrap();
        s.append(&[event(0), event(1)]).unwrap();
        let replayed = s.read().unwrap().len();
        s.append(&[event(2)]).unwrap();
        s.remove_first(replayed).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(Spool::open(&d).unwrap().read().unwrap(), vec![event(2)]);
        s.remove_first(1).unwrap();
        assert!(Spool::open(&d).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unreadable_line_is_set_aside_and_counted_never_deleted() {
        let d = dir("unreadable");
        let mut s = Spool::open(&d).unwrap();
        s.append(&[event(0)]).unwrap();
        tear(&s, b"this is not a row\n");
        s.append(&[event(2)]).unwrap();
        let mut s = Spool::open(&d).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.read().unwrap(), vec![event(0), event(2)]);
        let aside = std::fs::read_to_string(s.unreadable_path()).unwrap();
        assert_eq!(aside, "this is not a row\n");
        // Opening again sets nothing aside twice.
        let s = Spool::open(&d).unwrap();
        assert_eq!(std::fs::read_to_string(s.unreadable_path()).unwrap(), aside);
        let _ = std::fs::remove_dir_all(&d);
    }
}
